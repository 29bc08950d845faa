"""OpenAI Responses API streaming (``POST /v1/responses``). wire-formats.md section 2.2.

The stream is named SSE events whose ``event:`` equals the payload's ``type``::

    response.created -> response.output_item.added -> response.output_text.delta ...
    -> response.output_item.done -> response.completed | response.incomplete | response.failed

Function calls are output items (``{"type": "function_call", "id": "fc_...", "call_id":
"call_...", "name", "arguments"}``); their argument JSON streams as
``response.function_call_arguments.delta`` keyed by ``output_index``. A tool result must
answer the ``call_id``, so rxllm's ``ToolCall.id`` is the ``call_id``, never the item ``id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

from rxllm.errors import (
    BadRequest,
    ConfigError,
    FrameTooLarge,
    MalformedFrame,
    Overloaded,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    ServerError,
)
from rxllm.events import (
    Event,
    Finished,
    FinishReason,
    ToolCall,
    ToolCallDelta,
    Usage,
    _reasoning_delta,
    _text_delta,
)
from rxllm.request import Request
from rxllm.wire import DEFAULT_MAX_EVENT_BYTES, SSEEvent

from ._base import (
    DialectBase,
    HttpCall,
    SSEStreamDecoder,
    StreamDecoder,
    make_error,
    merge_extra,
)
from ._openai import OpenAIJSONDecoder, openai_error
from ._tools import MAX_ARGUMENTS_BYTES, parse_arguments

__all__ = ["ResponsesDialect", "responses_input", "responses_tools"]

_loads = orjson.loads

INCOMPLETE_REASONS: Final[Mapping[str, FinishReason]] = {
    "max_output_tokens": "length",
    "content_filter": "content_filter",
}
"""``incomplete_details.reason`` -> finish reason; anything else is ``length``."""

_TEXT_EVENTS: Final = frozenset({"response.output_text.delta", "response.refusal.delta"})
_REASONING_EVENTS: Final = frozenset(
    {"response.reasoning_summary_text.delta", "response.reasoning_text.delta"}
)


def responses_input(request: Request) -> list[dict[str, Any]]:
    """The conversation (system messages excluded) as Responses ``input`` items.

    Text messages are ``{"role", "content"}`` items; an assistant's tool calls become
    ``function_call`` items and tool results ``function_call_output`` items, both keyed by
    the ``call_id``.
    """
    items: list[dict[str, Any]] = []
    for m in request.conversation:
        if m.role == "tool":
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": m.tool_call_id,
                    "output": m.content or "",
                }
            )
            continue
        if m.content or not m.tool_calls:
            items.append({"role": m.role, "content": m.content or ""})
        items.extend(
            {
                "type": "function_call",
                "call_id": c.id,
                "name": c.name,
                "arguments": orjson.dumps(c.arguments).decode(),
            }
            for c in m.tool_calls
        )
    return items


def responses_tools(request: Request) -> list[dict[str, Any]]:
    """The request's tools as Responses function tools (flat, no ``function`` wrapper)."""
    return [
        {
            "type": "function",
            "name": t.name,
            "description": t.description,
            "parameters": dict(t.parameters),
        }
        for t in request.tools
    ]


def _tool_choice(choice: str) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    return {"type": "function", "name": choice}


def inband_error(err: Any, *, provider: str) -> ProviderError:
    """Map an ``error`` event or a failed response's ``error`` to a typed error (status 200).

    Codes follow the Responses API: ``rate_limit_exceeded``, ``server_error``,
    ``invalid_prompt``, ``invalid_image``..., plus ``insufficient_quota``.
    """
    if not isinstance(err, Mapping):
        return make_error(200, str(err or "error in stream"), provider=provider, cls=ServerError)
    message = str(err.get("message") or "error in stream")
    raw_code = err.get("code") or err.get("type")
    code = None if raw_code is None else str(raw_code)
    hay = (code or "").lower()
    cls: type[ProviderError]
    if "quota" in hay:
        cls = QuotaExhausted
    elif "rate_limit" in hay:
        cls = RateLimited
    elif "overloaded" in hay or "unavailable" in hay:
        cls = Overloaded
    elif hay.startswith("invalid") or any(
        m in hay for m in ("not_found", "image", "too_large", "unsupported", "content_policy")
    ):
        cls = BadRequest
    else:
        cls = ServerError
    return make_error(200, message, code=code, provider=provider, cls=cls)


class ResponsesDialect(DialectBase):
    """The Responses API with ``stream: true``.

    ``Request.stop`` has no Responses equivalent: a request with stop sequences raises
    ``ConfigError`` rather than silently ignoring them. ``extra`` is merged last into the
    body (``{"reasoning": {"effort": "low", "summary": "auto"}}``, ``{"store": False}``...).
    """

    name = "openai-responses"
    default_base_url = "https://api.openai.com/v1"
    api_key_env = ("OPENAI_API_KEY",)
    request_id_header = "x-request-id"

    def build_call(
        self, request: Request, *, model: str, base_url: str, api_key: str | None
    ) -> HttpCall:
        """POST ``{base_url}/responses`` with the request as a streaming body."""
        if request.stop:
            raise ConfigError("the OpenAI Responses API does not support stop sequences")
        body: dict[str, Any] = {"model": model, "input": responses_input(request)}
        system = request.system
        if system is not None:
            body["instructions"] = system
        if request.tools:
            body["tools"] = responses_tools(request)
        if request.tool_choice:
            body["tool_choice"] = _tool_choice(request.tool_choice)
        if request.response_schema is not None:
            body["text"] = {
                "format": {
                    "type": "json_schema",
                    "name": request.response_schema_name,
                    "schema": dict(request.response_schema),
                }
            }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            body["max_output_tokens"] = request.max_tokens
        body["stream"] = True
        merge_extra(body, request.extra)
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        return HttpCall("POST", base_url.rstrip("/") + "/responses", headers, orjson.dumps(body))

    def stream_decoder(
        self, *, content_type: str, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    ) -> StreamDecoder:
        """SSE for ``text/event-stream``; a whole ``response`` object for JSON."""
        if "json" in content_type.lower():
            return ResponsesJSONDecoder(max_event_bytes=max_event_bytes, provider=self.name)
        return ResponsesStreamDecoder(max_event_bytes=max_event_bytes, provider=self.name)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """``{"error": {"message", "type", "param", "code"}}`` (or any text) to a typed error."""
        return openai_error(status, headers, body, provider=self.name)


class _Call:
    """A function call being streamed (one output item)."""

    __slots__ = ("call_id", "done", "name", "parts", "size")

    def __init__(self, call_id: str | None, name: str | None) -> None:
        self.call_id = call_id
        self.name = name
        self.parts: list[str] = []
        self.size = 0
        self.done = False


class ResponsesStreamDecoder(SSEStreamDecoder):
    """Decodes Responses API stream events into rxllm events."""

    __slots__ = ("_calls", "_items", "_made_calls", "_provider")

    def __init__(
        self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES, provider: str = "openai-responses"
    ) -> None:
        super().__init__(max_event_bytes=max_event_bytes)
        self._calls: dict[int, _Call] = {}  # output_index -> call
        self._items: dict[str, int] = {}  # item id -> output_index
        self._made_calls = False
        self._provider = provider

    def on_event(self, event: SSEEvent, out: list[Event]) -> None:
        """A named event: its payload's ``type`` decides (the ``event:`` name if it has none)."""
        self._payload(event.data, event.event, out)

    def on_data(self, data: bytes, out: list[Event]) -> None:
        """An event without ``event:`` line (some proxies): dispatched by ``data.type``."""
        self._payload(data, "message", out)

    def _payload(self, data: str | bytes, name: str, out: list[Event]) -> None:
        try:
            obj = _loads(data)
        except orjson.JSONDecodeError:
            text = data if isinstance(data, str) else data.decode("utf-8", "replace")
            if text.strip().startswith("[DONE]"):  # some proxies end with it; nothing to do
                return
            if name == "error":
                raise inband_error({"message": text}, provider=self._provider) from None
            if isinstance(data, bytes) and "\ufffd" in text:  # invalid UTF-8: decode, retry
                self._payload(text, name, out)
                return
            raise MalformedFrame("a Responses stream event is not JSON", frame=text) from None
        if obj.__class__ is not dict:
            raise MalformedFrame(
                "a Responses stream event is not a JSON object",
                frame=data if isinstance(data, str) else data.decode("utf-8", "replace"),
            )
        try:
            self._dispatch(obj, str(obj.get("type") or name), out)
        except (AttributeError, TypeError, KeyError, IndexError) as exc:
            raise MalformedFrame(
                f"a Responses stream event has an unexpected shape: {exc}",
                frame=data if isinstance(data, str) else data.decode("utf-8", "replace"),
            ) from None

    def _dispatch(self, obj: dict[str, Any], kind: str, out: list[Event]) -> None:
        if kind in _TEXT_EVENTS:
            delta = obj.get("delta")
            if delta:
                out.append(_text_delta(_str(delta), obj))
        elif kind in _REASONING_EVENTS:
            delta = obj.get("delta")
            if delta:
                out.append(_reasoning_delta(_str(delta), obj))
        elif kind == "response.function_call_arguments.delta":
            self._arguments(obj, out)
        elif kind == "response.output_item.added":
            self._item_added(obj, out)
        elif kind == "response.function_call_arguments.done":
            index = self._index(obj)
            call = self._calls.get(index)
            if call is None:
                call = self._calls[index] = _Call(None, obj.get("name"))
            args = obj.get("arguments")
            self._complete(index, call, args if isinstance(args, str) else None, obj, out)
        elif kind == "response.output_item.done":
            item = obj.get("item")
            if isinstance(item, Mapping) and item.get("type") == "function_call":
                index = self._index(obj)
                call = self._calls.get(index)
                if call is None:
                    call = self._calls[index] = _Call(item.get("call_id"), item.get("name"))
                call.call_id = call.call_id or item.get("call_id")
                call.name = call.name or item.get("name")
                args = item.get("arguments")
                self._complete(index, call, args if isinstance(args, str) else None, obj, out)
        elif kind == "response.completed":
            self._flush(out)
            response = obj.get("response") or {}
            if response.get("usage"):
                out.append(usage_event(response["usage"]))
            out.append(
                Finished(
                    reason="tool_calls" if self._made_calls else "stop",
                    native_reason=str(response.get("status") or "completed"),
                    raw=obj,
                )
            )
            self.done = True
        elif kind == "response.incomplete":
            # Calls still streaming were cut off: they stay pending in the Response.
            response = obj.get("response") or {}
            details = response.get("incomplete_details") or {}
            native = details.get("reason")
            if response.get("usage"):
                out.append(usage_event(response["usage"]))
            out.append(
                Finished(
                    reason=INCOMPLETE_REASONS.get(str(native), "length"),
                    native_reason=None if native is None else str(native),
                    raw=obj,
                )
            )
            self.done = True
        elif kind == "error":
            # {"type": "error", "code", "message", "param"}, or the error nested in "error"
            err = obj.get("error")
            if not isinstance(err, Mapping):
                err = {"code": obj.get("code"), "message": obj.get("message")}
            raise inband_error(err, provider=self._provider)
        elif kind == "response.failed":
            response = obj.get("response") or {}
            err = response.get("error")
            raise inband_error(
                err if err else {"message": "the response failed"}, provider=self._provider
            )
        # Every other event (response.created, *.done, content_part.*...) carries nothing new.

    def _index(self, obj: Mapping[str, Any]) -> int:
        index = obj.get("output_index")
        if isinstance(index, int):
            return index
        item_id = obj.get("item_id")
        if isinstance(item_id, str) and item_id in self._items:
            return self._items[item_id]
        raise MalformedFrame("a Responses function call event has no output_index")

    def _item_added(self, obj: Mapping[str, Any], out: list[Event]) -> None:
        item = obj.get("item")
        if not isinstance(item, Mapping) or item.get("type") != "function_call":
            return
        index = self._index(obj)
        call = self._calls[index] = _Call(item.get("call_id"), item.get("name"))
        if isinstance(item.get("id"), str):
            self._items[item["id"]] = index
        args = item.get("arguments") or ""
        self._append(call, _str(args))
        out.append(
            ToolCallDelta(index=index, id=call.call_id, name=call.name, arguments=args, raw=obj)
        )

    def _arguments(self, obj: Mapping[str, Any], out: list[Event]) -> None:
        index = self._index(obj)
        call = self._calls.get(index)
        if call is None:  # no output_item.added seen: still assemble by index
            call = self._calls[index] = _Call(None, None)
        delta = _str(obj.get("delta") or "")
        self._append(call, delta)
        out.append(ToolCallDelta(index=index, id=call.call_id, arguments=delta, raw=obj))

    def _append(self, call: _Call, text: str) -> None:
        call.parts.append(text)
        call.size += len(text)
        if call.size > MAX_ARGUMENTS_BYTES:
            raise FrameTooLarge(
                f"tool call {call.name!r} arguments are larger than {MAX_ARGUMENTS_BYTES} bytes",
                limit=MAX_ARGUMENTS_BYTES,
            )

    def _complete(
        self, index: int, call: _Call, arguments: str | None, raw: Any, out: list[Event]
    ) -> None:
        if call.done:
            return
        text = arguments if arguments is not None else "".join(call.parts)
        call.done = True
        self._made_calls = True
        out.append(
            ToolCall(
                index=index,
                id=call.call_id,
                name=call.name or "",
                arguments=parse_arguments(text, name=call.name),
                raw=raw,
            )
        )

    def _flush(self, out: list[Event]) -> None:
        for index in sorted(self._calls):
            self._complete(index, self._calls[index], None, None, out)


def _str(value: Any) -> str:
    if value.__class__ is not str:
        raise TypeError(f"expected a string, not {type(value).__name__}")
    return value


def usage_event(usage: Mapping[str, Any]) -> Usage:
    """Responses ``usage`` (input/output/total tokens and their details) to ``Usage``."""
    out_details = usage.get("output_tokens_details") or {}
    in_details = usage.get("input_tokens_details") or {}
    return Usage(
        input_tokens=usage.get("input_tokens"),
        output_tokens=usage.get("output_tokens"),
        total_tokens=usage.get("total_tokens"),
        reasoning_tokens=out_details.get("reasoning_tokens"),
        cached_tokens=in_details.get("cached_tokens"),
        raw=usage,
    )


class ResponsesJSONDecoder(OpenAIJSONDecoder):
    """A server that answered with one ``response`` object instead of a stream."""

    __slots__ = ()

    def _translate(self, out: list[Event]) -> None:
        body = self._load_body()
        if body is None:
            return
        made_calls = False
        for index, item in enumerate(body.get("output") or ()):
            kind = item.get("type")
            if kind == "message":
                for part in item.get("content") or ():
                    text = part.get("text") or part.get("refusal")
                    if text:
                        out.append(_text_delta(_str(text), body))
            elif kind == "reasoning":
                out.extend(
                    _reasoning_delta(_str(part["text"]), body)
                    for part in item.get("summary") or item.get("content") or ()
                    if part.get("text")
                )
            elif kind == "function_call":
                made_calls = True
                out.append(
                    ToolCall(
                        index=index,
                        id=item.get("call_id"),
                        name=item.get("name") or "",
                        arguments=parse_arguments(
                            _str(item.get("arguments") or ""), name=item.get("name")
                        ),
                    )
                )
        if body.get("usage"):
            out.append(usage_event(body["usage"]))
        status = body.get("status")
        if status == "incomplete":
            native = (body.get("incomplete_details") or {}).get("reason")
            out.append(
                Finished(reason=INCOMPLETE_REASONS.get(str(native), "length"), native_reason=native)
            )
        elif status == "failed":
            out.clear()
            self._fail(inband_error(body.get("error") or {}, provider=self._prov))
            return
        else:
            out.append(
                Finished(
                    reason="tool_calls" if made_calls else "stop",
                    native_reason=str(status or "completed"),
                )
            )
        self.done = True
