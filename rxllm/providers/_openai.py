"""OpenAI Chat Completions streaming, and every server that speaks it (vLLM, llama.cpp,
Ollama's ``/v1``, LiteLLM proxies...). wire-formats.md section 2.1 and 5."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

from rxllm.errors import (
    BadRequest,
    FrameTooLarge,
    MalformedFrame,
    Overloaded,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    ServerError,
    WireError,
)
from rxllm.events import (
    Event,
    Finished,
    FinishReason,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    _new,
    _reasoning_delta,
    _set_text,
    _text_delta,
)
from rxllm.events import _set_text_raw as _set_raw
from rxllm.request import Message, Request
from rxllm.wire import DEFAULT_MAX_EVENT_BYTES, SSEEvent

from ._base import (
    DialectBase,
    HttpCall,
    SSEStreamDecoder,
    StreamDecoder,
    body_snippet,
    load_json_body,
    make_error,
    merge_extra,
)
from ._tools import MAX_ARGUMENTS_BYTES, parse_arguments

__all__ = ["OpenAIDialect", "openai_messages", "openai_tools"]

FINISH_REASONS: Final[Mapping[str, FinishReason]] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
_loads = orjson.loads


def openai_messages(request: Request) -> list[dict[str, Any]]:
    """The request's messages in the Chat Completions shape."""
    return [_message(m) for m in request.messages]


def _message(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": orjson.dumps(c.arguments).decode()},
            }
            for c in m.tool_calls
        ]
    if m.role == "tool":
        out["tool_call_id"] = m.tool_call_id
        out["content"] = m.content or ""
    if m.name and m.role != "tool":
        out["name"] = m.name
    return out


def openai_tools(request: Request) -> list[dict[str, Any]]:
    """The request's tools in the Chat Completions shape."""
    return [
        {
            "type": "function",
            "function": {
                "name": t.name,
                "description": t.description,
                "parameters": dict(t.parameters),
            },
        }
        for t in request.tools
    ]


def openai_tool_choice(choice: str) -> Any:
    """``auto`` / ``none`` / ``required`` pass through; anything else names a function."""
    if choice in ("auto", "none", "required"):
        return choice
    return {"type": "function", "function": {"name": choice}}


def inband_error(err: Any, *, provider: str) -> ProviderError:
    """Map an ``{"error": {...}}`` object sent inside a 200 stream to a typed error.

    vLLM puts the HTTP status in an integer ``code``; OpenAI sends ``type`` / ``code``
    strings. An error with no recognisable type is a retryable server error.
    """
    if not isinstance(err, Mapping):
        return make_error(200, str(err), provider=provider, cls=ServerError)
    message = str(err.get("message") or "error in stream")
    code, etype = err.get("code"), err.get("type")
    if isinstance(code, int) and code >= 400:
        return make_error(code, message, code=str(etype or code), provider=provider)
    code_s = str(code or etype or "") or None
    hay = f"{code or ''} {etype or ''}".lower()
    cls: type[ProviderError]
    if "quota" in hay:
        cls = QuotaExhausted
    elif "rate_limit" in hay:
        cls = RateLimited
    elif "invalid_request" in hay or "not_found" in hay:
        cls = BadRequest
    elif "overloaded" in hay:
        cls = Overloaded
    else:
        cls = ServerError
    return make_error(200, message, code=code_s, provider=provider, cls=cls)


class OpenAIDialect(DialectBase):
    """Chat Completions with ``stream: true`` and ``stream_options.include_usage``."""

    name = "openai"
    default_base_url = "https://api.openai.com/v1"
    api_key_env = ("OPENAI_API_KEY",)
    request_id_header = "x-request-id"

    def build_call(
        self, request: Request, *, model: str, base_url: str, api_key: str | None
    ) -> HttpCall:
        """POST ``{base_url}/chat/completions`` with the request as a streaming body."""
        body: dict[str, Any] = {
            "model": model,
            "messages": openai_messages(request),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            body["tools"] = openai_tools(request)
        if request.tool_choice:
            body["tool_choice"] = openai_tool_choice(request.tool_choice)
        if request.response_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": request.response_schema_name,
                    "schema": dict(request.response_schema),
                },
            }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.stop:
            body["stop"] = list(request.stop)
        merge_extra(body, request.extra)
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
        }
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        return HttpCall(
            "POST", base_url.rstrip("/") + "/chat/completions", headers, orjson.dumps(body)
        )

    def stream_decoder(
        self, *, content_type: str, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    ) -> StreamDecoder:
        """SSE for ``text/event-stream``; a whole JSON completion otherwise."""
        if "json" in content_type.lower():
            return OpenAIJSONDecoder(max_event_bytes=max_event_bytes, provider=self.name)
        return OpenAIStreamDecoder(max_event_bytes=max_event_bytes, provider=self.name)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """``{"error": {"message", "type", "param", "code"}}`` (or any text) to a typed error."""
        return openai_error(status, headers, body, provider=self.name)


def openai_error(
    status: int, headers: Mapping[str, str], body: bytes, *, provider: str
) -> ProviderError:
    """Map an OpenAI-shaped error response (``{"error": {...}}``, ``{"error": "..."}`` or any
    text) to a typed error; shared by the Chat Completions and Responses dialects."""
    data = load_json_body(body)
    err = data.get("error") if isinstance(data, Mapping) else None
    if isinstance(err, Mapping):
        message = str(err.get("message") or f"HTTP {status}")
        code = err.get("code") or err.get("type")
        return make_error(
            status,
            message,
            code=None if code is None else str(code),
            headers=headers,
            provider=provider,
        )
    if isinstance(err, str):  # Ollama and some proxies: {"error": "..."}
        return make_error(status, err, headers=headers, provider=provider)
    return make_error(
        status, body_snippet(body) or f"HTTP {status}", headers=headers, provider=provider
    )


class OpenAIStreamDecoder(SSEStreamDecoder):
    """Decodes ``chat.completion.chunk`` events (choice 0) into rxllm events."""

    __slots__ = ("_calls", "_finish", "_provider")

    def __init__(
        self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES, provider: str = "openai"
    ) -> None:
        super().__init__(max_event_bytes=max_event_bytes)
        self._calls: dict[int, list[Any]] = {}  # index -> [id, name, [fragments]]
        self._finish: str | None = None
        self._provider = provider

    def feed(self, data: bytes) -> list[Event]:
        """Decode one read. The per-token case (a chunk whose only delta is text) is
        handled inline; everything else goes through ``on_data``."""
        out: list[Event] = []
        if self.error is not None:
            return out
        try:
            items = self._sse.feed_raw(data)
        except (FrameTooLarge, MalformedFrame) as exc:
            self._run(exc.events, out)
            self._fail(exc)
            return out
        append = out.append
        for item in items:
            if item.__class__ is bytes:
                try:
                    chunk = _loads(item)
                    choice = chunk["choices"][0]
                    delta = choice["delta"]
                    content = delta["content"]
                    if (
                        len(delta) == 1
                        and content.__class__ is str
                        and content
                        and choice["finish_reason"] is None
                        and choice["index"] == 0
                        and ("usage" not in chunk or chunk["usage"] is None)
                    ):
                        ev = _new(TextDelta)
                        _set_text(ev, content)
                        _set_raw(ev, chunk)
                        append(ev)
                        continue
                except Exception:  # noqa: BLE001, S110 - any other shape: the general path
                    pass
            if self._run([item], out):
                break
        return out

    def on_event(self, event: SSEEvent, out: list[Event]) -> None:
        """A typed event: ``event: error`` (Assistants-style) or data under another name."""
        if event.event == "error":
            try:
                payload = _loads(event.data)
            except orjson.JSONDecodeError:
                payload = {"message": event.data}
            raise inband_error(
                payload.get("error", payload) if isinstance(payload, dict) else payload,
                provider=self._provider,
            )
        self.on_data(event.data.encode(), out)

    def on_data(self, data: bytes, out: list[Event]) -> None:
        """One ``chat.completion.chunk`` (choice 0), ``[DONE]`` or an in-band error."""
        try:
            chunk = _loads(data)
        except orjson.JSONDecodeError:
            self._not_json(data, out)
            return
        if chunk.__class__ is not dict:
            raise MalformedFrame(
                "an OpenAI stream event is not a JSON object", frame=data.decode("utf-8", "replace")
            )
        try:
            self._chunk(chunk, out)
        except (AttributeError, TypeError, KeyError, IndexError) as exc:
            # A JSON object of the wrong shape (a choice or delta that is not an object...).
            raise MalformedFrame(
                f"an OpenAI stream chunk has an unexpected shape: {exc}",
                frame=data.decode("utf-8", "replace"),
            ) from None

    def _chunk(self, chunk: dict[str, Any], out: list[Event]) -> None:
        choices = chunk.get("choices")
        if choices:
            choice = choices[0]
            if choice.get("index") not in (0, None):  # n > 1: only choice 0 is decoded
                choice = next((c for c in choices if c.get("index") in (0, None)), None)
            delta = choice.get("delta") if choice is not None else None
            if delta:
                content = delta.get("content")
                if content:
                    if content.__class__ is not str:
                        raise TypeError("delta.content is not a string")
                    out.append(_text_delta(content, chunk))
                if content is None or len(delta) > 1:
                    self._other(delta, chunk, out)
            if choice is not None and choice.get("finish_reason"):
                self._finish_reason(choice["finish_reason"], chunk, out)
            if chunk.get("usage"):
                out.append(usage_event(chunk["usage"]))
        else:
            self._extra(chunk, out)

    def _not_json(self, data: bytes, out: list[Event]) -> None:
        text = data.decode("utf-8", "replace").strip()
        if text.startswith("[DONE]"):
            self._end(out)
            self.done = True
            return
        if not text:
            return
        if "\ufffd" in text:  # invalid UTF-8: decode with replacement, as SSE requires
            try:
                self.on_data(text.encode(), out)
                return
            except MalformedFrame:
                pass
        raise MalformedFrame("an OpenAI stream event is not JSON", frame=text)

    def _extra(self, chunk: dict[str, Any], out: list[Event]) -> None:
        if "error" in chunk:
            raise inband_error(chunk["error"], provider=self._provider)
        usage = chunk.get("usage")
        if usage:
            out.append(usage_event(usage))

    def _other(self, delta: Mapping[str, Any], chunk: Any, out: list[Event]) -> None:
        # reasoning: llama.cpp / DeepSeek / vLLM use reasoning_content, Ollama uses reasoning
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and isinstance(reasoning, str):
            out.append(_reasoning_delta(reasoning, chunk))
        refusal = delta.get("refusal")
        if refusal and isinstance(refusal, str):
            out.append(_text_delta(refusal, chunk))
        for tc in delta.get("tool_calls") or ():
            self._tool_delta(tc, chunk, out)
        fc = delta.get("function_call")  # deprecated single function call
        if fc:
            self._tool_delta({"index": 0, "function": fc}, chunk, out)

    def _tool_delta(self, tc: Mapping[str, Any], chunk: Any, out: list[Event]) -> None:
        index = tc.get("index")
        if not isinstance(index, int):
            index = len(self._calls)
        fn = tc.get("function") or {}
        args = fn.get("arguments")
        if args is not None and not isinstance(args, str):  # a whole object (some servers)
            args = orjson.dumps(args).decode()
        args = args or ""
        slot = self._calls.get(index)
        call_id, name = tc.get("id"), fn.get("name")
        if slot is None:
            slot = self._calls[index] = [call_id, name, [args], len(args)]
        else:
            slot[0] = slot[0] or call_id
            slot[1] = slot[1] or name
            slot[2].append(args)
            slot[3] += len(args)
        if slot[3] > MAX_ARGUMENTS_BYTES:
            raise FrameTooLarge(
                f"tool call {slot[1]!r} arguments are larger than {MAX_ARGUMENTS_BYTES} bytes",
                limit=MAX_ARGUMENTS_BYTES,
            )
        out.append(ToolCallDelta(index=index, id=call_id, name=name, arguments=args, raw=chunk))

    def _finish_reason(self, finish: str, chunk: Any, out: list[Event]) -> None:
        self._flush_calls(out)
        self._finish = finish
        out.append(
            Finished(reason=FINISH_REASONS.get(finish, "stop"), native_reason=finish, raw=chunk)
        )

    def _flush_calls(self, out: list[Event]) -> None:
        for index in sorted(self._calls):
            call_id, name, parts, _ = self._calls[index]
            out.append(
                ToolCall(
                    index=index,
                    id=call_id,
                    name=name or "",
                    arguments=parse_arguments("".join(parts), name=name),
                )
            )
        self._calls.clear()

    def _end(self, out: list[Event]) -> None:
        if self._calls:  # a server that sends [DONE] without a finish chunk
            self._flush_calls(out)


def usage_event(usage: Mapping[str, Any]) -> Usage:
    """OpenAI ``usage`` (prompt/completion/total tokens and their details) to ``Usage``."""
    details = usage.get("completion_tokens_details") or {}
    prompt_details = usage.get("prompt_tokens_details") or {}
    return Usage(
        input_tokens=usage.get("prompt_tokens"),
        output_tokens=usage.get("completion_tokens"),
        total_tokens=usage.get("total_tokens"),
        reasoning_tokens=details.get("reasoning_tokens") if isinstance(details, Mapping) else None,
        cached_tokens=prompt_details.get("cached_tokens")
        if isinstance(prompt_details, Mapping)
        else None,
        raw=usage,
    )


class OpenAIJSONDecoder(SSEStreamDecoder):
    """A server that answered with one ``chat.completion`` JSON body instead of a stream."""

    __slots__ = ("_body", "_limit", "_prov", "_size")

    def __init__(
        self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES, provider: str = "openai"
    ) -> None:
        super().__init__(max_event_bytes=max_event_bytes)
        self._body: list[bytes] = []
        self._size = 0
        self._limit = max_event_bytes
        self._prov = provider

    def feed(self, data: bytes) -> list[Event]:
        """Buffer the body (bounded)."""
        if self.error is None:
            self._body.append(data)
            self._size += len(data)
            if self._size > self._limit:
                self._fail(
                    FrameTooLarge(
                        f"a JSON body is larger than {self._limit} bytes", limit=self._limit
                    )
                )
                self._body.clear()
        return []

    def finish(self) -> list[Event]:
        """Translate the whole completion into events."""
        out: list[Event] = []
        if self.error is not None:
            return out
        try:
            self._translate(out)
        except (ProviderError, WireError) as exc:
            self._fail(exc)
        except (AttributeError, TypeError, KeyError, IndexError) as exc:
            out.clear()
            self._fail(MalformedFrame(f"a JSON completion has an unexpected shape: {exc}"))
        return out

    def _load_body(self) -> Mapping[str, Any] | None:
        """The buffered body as a JSON object, or ``None`` after recording why it is not one
        (not JSON, not an object, or an ``error`` object)."""
        raw = b"".join(self._body)
        try:
            body = _loads(raw)
        except orjson.JSONDecodeError as exc:
            self._fail(
                MalformedFrame(
                    f"a JSON body is not JSON: {exc}", frame=raw[:200].decode("utf-8", "replace")
                )
            )
            return None
        if not isinstance(body, Mapping):
            self._fail(MalformedFrame("a JSON body is not an object"))
            return None
        if body.get("error"):
            self._fail(inband_error(body["error"], provider=self._prov))
            return None
        return body

    def _translate(self, out: list[Event]) -> None:
        body = self._load_body()
        if body is None:
            return
        choices = body.get("choices") or [{}]
        msg = choices[0].get("message") or {}
        reasoning = msg.get("reasoning_content") or msg.get("reasoning")
        if reasoning:
            out.append(_reasoning_delta(reasoning, body))
        if msg.get("content"):
            out.append(_text_delta(msg["content"], body))
        for i, tc in enumerate(msg.get("tool_calls") or ()):
            fn = tc.get("function") or {}
            args = fn.get("arguments") or ""
            if not isinstance(args, str):
                args = orjson.dumps(args).decode()
            out.append(
                ToolCall(
                    index=i,
                    id=tc.get("id"),
                    name=fn.get("name") or "",
                    arguments=parse_arguments(args, name=fn.get("name")),
                )
            )
        if body.get("usage"):
            out.append(usage_event(body["usage"]))
        finish = choices[0].get("finish_reason") or "stop"
        out.append(Finished(reason=FINISH_REASONS.get(finish, "stop"), native_reason=finish))
        self.done = True
