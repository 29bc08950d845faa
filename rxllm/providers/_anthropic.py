"""Anthropic Messages streaming (``POST /v1/messages`` with ``stream: true``).

wire-formats.md section 3. Every SSE event has an ``event:`` line and a JSON payload whose
``type`` repeats it; the payload, not the event name, decides (the name is the fallback for
a payload without ``type``). Order: ``message_start``, then per content block
``content_block_start`` / ``content_block_delta``... / ``content_block_stop``, then
``message_delta`` (stop reason, CUMULATIVE usage) and ``message_stop``. ``ping`` may come
anywhere and unknown types are ignored, as Anthropic's versioning policy asks.

Normalization choices:

- A ``tool_use`` block is keyed by its block ``index`` (the position in the final content):
  ``ToolCallDelta.index`` and ``ToolCall.index`` are that index, so they need not start at 0
  when text comes first.
- ``Usage.input_tokens`` counts every prompt token: ``input_tokens`` plus the cache write and
  cache read counts (Anthropic reports them apart; OpenAI and Gemini include them), and
  ``cached_tokens`` is the cache read count.
- A response schema is sent as the GA structured-output option
  ``output_config: {"format": {"type": "json_schema", "schema": ...}}`` (no beta header).
  The beta spelling (``output_format`` plus the ``structured-outputs-2025-11-13`` beta
  header) is not used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Final

import orjson

from rxllm.errors import (
    AuthenticationError,
    BadRequest,
    ConfigError,
    FrameTooLarge,
    MalformedFrame,
    Overloaded,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    RequestTimeout,
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
from rxllm.request import Message, Request
from rxllm.wire import DEFAULT_MAX_EVENT_BYTES, SSEEvent

from ._base import (
    DialectBase,
    HttpCall,
    SSEStreamDecoder,
    StreamDecoder,
    body_snippet,
    is_quota_text,
    load_json_body,
    make_error,
    merge_extra,
)
from ._tools import MAX_ARGUMENTS_BYTES, parse_arguments

__all__ = [
    "ANTHROPIC_VERSION",
    "DEFAULT_MAX_TOKENS",
    "AnthropicDialect",
    "AnthropicStreamDecoder",
    "anthropic_error",
    "anthropic_messages",
    "anthropic_tool_choice",
    "anthropic_tools",
]

ANTHROPIC_VERSION: Final = "2023-06-01"
"""The ``anthropic-version`` header sent with every call."""

DEFAULT_MAX_TOKENS: Final = 4096
"""``max_tokens`` is required by the Messages API; this is sent when the request has none."""

STOP_REASONS: Final[Mapping[str, FinishReason]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
"""Anthropic ``stop_reason`` to the normalized finish reason (anything else is ``stop``)."""

ERROR_CLASSES: Final[Mapping[str, type[ProviderError]]] = {
    "invalid_request_error": BadRequest,
    "authentication_error": AuthenticationError,
    "permission_error": AuthenticationError,
    "not_found_error": BadRequest,
    "request_too_large": BadRequest,
    "rate_limit_error": RateLimited,
    "billing_error": QuotaExhausted,
    "api_error": ServerError,
    "overloaded_error": Overloaded,
    "timeout_error": RequestTimeout,
}
"""Anthropic ``error.type`` to the error class, for errors inside a 200 stream."""

_loads = orjson.loads


# --- request --------------------------------------------------------------------------------


def anthropic_messages(request: Request) -> list[dict[str, Any]]:
    """The conversation in the Messages shape: ``user``/``assistant`` turns of content blocks.

    System messages are left out (they go to the top-level ``system``). Assistant tool calls
    become ``tool_use`` blocks; ``tool`` messages become ``tool_result`` blocks of a user turn.
    Consecutive turns of the same role are merged, as the API requires alternation (so the
    results of parallel tool calls share one user turn). A turn with no content at all is a
    ``ConfigError``: the API would reject it.
    """
    out: list[dict[str, Any]] = []
    for message in request.conversation:
        role, blocks = _blocks(message)
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    for turn in out:
        if not turn["content"]:
            raise ConfigError(f"an empty {turn['role']} message cannot be sent to Anthropic")
    return out


def _blocks(m: Message) -> tuple[str, list[dict[str, Any]]]:
    if m.role == "tool":
        result: dict[str, Any] = {"type": "tool_result", "tool_use_id": m.tool_call_id}
        if m.content:
            result["content"] = m.content
        return "user", [result]
    blocks: list[dict[str, Any]] = []
    if m.content:
        blocks.append({"type": "text", "text": m.content})
    if m.role == "assistant":
        blocks.extend(
            {"type": "tool_use", "id": c.id, "name": c.name, "input": dict(c.arguments)}
            for c in m.tool_calls
        )
        return "assistant", blocks
    return "user", blocks


def anthropic_tools(request: Request) -> list[dict[str, Any]]:
    """The request's tools as ``{"name", "description", "input_schema"}``."""
    tools: list[dict[str, Any]] = []
    for t in request.tools:
        tool: dict[str, Any] = {"name": t.name}
        if t.description:
            tool["description"] = t.description
        tool["input_schema"] = dict(t.parameters)
        tools.append(tool)
    return tools


def anthropic_tool_choice(choice: str) -> dict[str, Any]:
    """``auto``, ``none``, ``required`` (Anthropic's ``any``) or a tool name."""
    if choice in ("auto", "none"):
        return {"type": choice}
    if choice == "required":
        return {"type": "any"}
    return {"type": "tool", "name": choice}


def _versioned(base_url: str, version: str) -> str:
    base = base_url.rstrip("/")
    return base if base.endswith("/" + version) else f"{base}/{version}"


# --- errors ---------------------------------------------------------------------------------


def anthropic_error(
    status: int,
    data: Any,
    *,
    headers: Mapping[str, str] | None = None,
    provider: str = "anthropic",
    body_text: str = "",
) -> ProviderError:
    """Map ``{"type": "error", "error": {"type", "message", "details"?}, "request_id"}``.

    For an HTTP error (``status`` >= 400) the class follows the status (529 is
    ``Overloaded``, a 429 naming a spend limit or quota is ``QuotaExhausted``); for an error
    event inside a 200 stream it follows ``error.type``. ``code`` is always ``error.type``.
    """
    err = data.get("error") if isinstance(data, Mapping) else None
    etype: str | None = None
    message = ""
    if isinstance(err, Mapping):
        raw_type = err.get("type")
        etype = raw_type if isinstance(raw_type, str) else None
        message = str(err.get("message") or "")
    elif isinstance(err, str):
        message = err
    cls: type[ProviderError] | None = None
    if status < 400:
        cls = ERROR_CLASSES.get(etype or "", ServerError)
        hay = f"{etype or ''} {message} {body_text}".lower()
        if cls is RateLimited and is_quota_text(hay):
            cls = QuotaExhausted
    elif etype == "billing_error":
        cls = QuotaExhausted
    error = make_error(
        status,
        message or (f"Anthropic {etype}" if etype else f"HTTP {status}"),
        code=etype,
        headers=headers,
        provider=provider,
        body_text=body_text,
        cls=cls,
    )
    if error.request_id is None and isinstance(data, Mapping):
        request_id = data.get("request_id")
        if isinstance(request_id, str):
            error.request_id = request_id
    return error


# --- the dialect ----------------------------------------------------------------------------


class AnthropicDialect(DialectBase):
    """Anthropic Messages with ``stream: true`` (wire-formats.md section 3)."""

    name = "anthropic"
    default_base_url = "https://api.anthropic.com"
    api_key_env: ClassVar[tuple[str, ...]] = ("ANTHROPIC_API_KEY",)
    request_id_header = "request-id"
    stream_content_type = "text/event-stream"

    def build_call(
        self, request: Request, *, model: str, base_url: str, api_key: str | None
    ) -> HttpCall:
        """POST ``{base_url}/v1/messages``; the key goes only into ``x-api-key``.

        A ``base_url`` that already ends in ``/v1`` is used as is.
        """
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "stream": True,
        }
        system = request.system
        if system:
            body["system"] = system
        body["messages"] = anthropic_messages(request)
        if request.tools:
            body["tools"] = anthropic_tools(request)
        if request.tool_choice:
            body["tool_choice"] = anthropic_tool_choice(request.tool_choice)
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        if request.response_schema is not None:
            body["output_config"] = {
                "format": {"type": "json_schema", "schema": dict(request.response_schema)}
            }
        merge_extra(body, request.extra)
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream",
            "anthropic-version": ANTHROPIC_VERSION,
        }
        if api_key:
            headers["x-api-key"] = api_key
        return HttpCall(
            "POST", _versioned(base_url, "v1") + "/messages", headers, orjson.dumps(body)
        )

    def stream_decoder(
        self, *, content_type: str, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    ) -> StreamDecoder:
        """The Messages stream is always SSE."""
        return AnthropicStreamDecoder(max_event_bytes=max_event_bytes, provider=self.name)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """``{"type": "error", "error": {"type", "message"}, "request_id"}`` (or any text)."""
        data = load_json_body(body)
        if isinstance(data, Mapping) and "error" in data:
            return anthropic_error(
                status,
                data,
                headers=headers,
                provider=self.name,
                body_text=body[:4096].decode("utf-8", "replace"),
            )
        return make_error(
            status, body_snippet(body) or f"HTTP {status}", headers=headers, provider=self.name
        )


class AnthropicStreamDecoder(SSEStreamDecoder):
    """Decodes Messages stream events into rxllm events.

    ``done`` becomes true at ``message_stop``. An ``error`` event raises the typed error; a
    payload that is not a JSON object, or tool input that is not a JSON object, is a
    ``MalformedFrame``. Tool argument fragments of the open ``tool_use`` blocks are bounded
    together by ``MAX_ARGUMENTS_BYTES``.
    """

    __slots__ = (
        "_cache_read",
        "_cache_write",
        "_input",
        "_open_bytes",
        "_output",
        "_provider",
        "_stop_reason",
        "_tools",
    )

    def __init__(
        self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES, provider: str = "anthropic"
    ) -> None:
        super().__init__(max_event_bytes=max_event_bytes)
        self._provider = provider
        # block index -> [id, name, [fragments], size, input from content_block_start]
        self._tools: dict[int, list[Any]] = {}
        self._open_bytes = 0
        self._stop_reason: str | None = None
        self._input: int | None = None
        self._cache_write: int | None = None
        self._cache_read: int | None = None
        self._output: int | None = None

    def on_event(self, event: SSEEvent, out: list[Event]) -> None:
        """One named event (every Anthropic event has an ``event:`` line)."""
        self._handle(event.data, event.event, out)

    def on_data(self, data: bytes, out: list[Event]) -> None:
        """An event without an ``event:`` line: its payload's ``type`` decides."""
        self._handle(data.decode("utf-8", "replace"), "message", out)

    def _handle(self, data: str, name: str, out: list[Event]) -> None:
        try:
            payload = _loads(data)
        except orjson.JSONDecodeError:
            if not data.strip():  # an empty keep-alive event
                return
            if name == "error":
                raise anthropic_error(
                    200, {"error": data}, provider=self._provider, body_text=data
                ) from None
            raise MalformedFrame("an Anthropic stream event is not JSON", frame=data) from None
        if payload.__class__ is not dict:
            raise MalformedFrame("an Anthropic stream event is not a JSON object", frame=data)
        try:
            self._dispatch(payload, data, name, out)
        except (AttributeError, TypeError, KeyError, IndexError) as exc:
            # A JSON object of a shape no check above foresaw: still a typed error.
            raise MalformedFrame(
                f"an Anthropic stream event has an unexpected shape: {exc}", frame=data
            ) from None

    def _dispatch(self, payload: dict[str, Any], data: str, name: str, out: list[Event]) -> None:
        kind = payload.get("type") or name
        if kind == "content_block_delta":
            self._delta(payload, data, out)
        elif kind == "content_block_start":
            self._block_start(payload, data, out)
        elif kind == "content_block_stop":
            self._block_stop(payload, out)
        elif kind == "message_start":
            message = payload.get("message")
            if isinstance(message, dict) and isinstance(message.get("usage"), dict):
                out.append(self._usage(message["usage"]))
        elif kind == "message_delta":
            delta = payload.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                self._stop_reason = delta["stop_reason"]
            if isinstance(payload.get("usage"), dict):
                out.append(self._usage(payload["usage"]))
        elif kind == "message_stop":
            self._stop(payload, out)
        elif kind == "error" or (name == "message" and "error" in payload):
            raise anthropic_error(200, payload, provider=self._provider, body_text=data)
        # "ping" and any type this version does not know: ignored.

    def _delta(self, payload: dict[str, Any], data: str, out: list[Event]) -> None:
        delta = payload.get("delta")
        if not isinstance(delta, dict):
            raise MalformedFrame("content_block_delta without a delta object", frame=data)
        dtype = delta.get("type")
        if dtype == "text_delta":
            text = delta.get("text")
            if text.__class__ is str:
                if text:
                    out.append(_text_delta(text, payload))
            elif text is not None:
                raise MalformedFrame("text_delta.text is not a string", frame=data)
        elif dtype == "input_json_delta":
            index = payload.get("index")
            block = self._tools.get(index) if isinstance(index, int) else None
            if block is None or not isinstance(index, int):  # server_tool_use and the like
                return
            fragment = delta.get("partial_json")
            if fragment.__class__ is not str:
                if fragment is None:
                    return
                raise MalformedFrame("input_json_delta.partial_json is not a string", frame=data)
            if fragment:
                block[2].append(fragment)
                block[3] += len(fragment)
                self._open_bytes += len(fragment)
                if self._open_bytes > MAX_ARGUMENTS_BYTES:
                    raise FrameTooLarge(
                        f"tool call {block[1]!r} arguments are larger than "
                        f"{MAX_ARGUMENTS_BYTES} bytes",
                        limit=MAX_ARGUMENTS_BYTES,
                    )
                out.append(ToolCallDelta(index=index, arguments=fragment, raw=payload))
        elif dtype == "thinking_delta":
            thinking = delta.get("thinking")
            if thinking.__class__ is str:
                if thinking:
                    out.append(_reasoning_delta(thinking, payload))
            elif thinking is not None:
                raise MalformedFrame("thinking_delta.thinking is not a string", frame=data)
        elif dtype == "signature_delta":
            signature = delta.get("signature")
            if isinstance(signature, str) and signature:
                out.append(_reasoning_delta("", payload, signature))
        # citations_delta and unknown delta types: ignored.

    def _block_start(self, payload: dict[str, Any], data: str, out: list[Event]) -> None:
        block = payload.get("content_block")
        if not isinstance(block, dict):
            raise MalformedFrame("content_block_start without a content_block", frame=data)
        btype = block.get("type")
        if btype == "tool_use":
            index = payload.get("index")
            if not isinstance(index, int):
                raise MalformedFrame("a tool_use block without an integer index", frame=data)
            call_id = block.get("id") if isinstance(block.get("id"), str) else None
            name = block.get("name") if isinstance(block.get("name"), str) else None
            initial = block.get("input")
            old = self._tools.pop(index, None)
            if old is not None:
                self._open_bytes -= old[3]
            self._tools[index] = [
                call_id,
                name,
                [],
                0,
                initial if isinstance(initial, dict) and initial else None,
            ]
            out.append(ToolCallDelta(index=index, id=call_id, name=name, raw=payload))
        elif btype == "text":
            text = block.get("text")
            if isinstance(text, str) and text:
                out.append(_text_delta(text, payload))
        elif btype == "thinking":
            thinking = block.get("thinking")
            signature = block.get("signature")
            text = thinking if isinstance(thinking, str) else ""
            sig = signature if isinstance(signature, str) and signature else None
            if text or sig:
                out.append(_reasoning_delta(text, payload, sig))
        # redacted_thinking, server_tool_use, web_search_tool_result...: not client content.

    def _block_stop(self, payload: dict[str, Any], out: list[Event]) -> None:
        index = payload.get("index")
        if index.__class__ is not int:
            return
        block = self._tools.pop(index, None)
        if block is not None:
            out.append(self._tool_call(index, block, payload))

    def _tool_call(self, index: int, block: list[Any], raw: Any) -> ToolCall:
        call_id, name, parts, size, initial = block
        self._open_bytes -= size
        text = "".join(parts)
        if text.strip():
            arguments = parse_arguments(text, name=name)
        else:  # a tool without arguments streams only "" fragments: its input is {}
            arguments = dict(initial) if initial else {}
        return ToolCall(index=index, id=call_id, name=name or "", arguments=arguments, raw=raw)

    def _usage(self, usage: dict[str, Any]) -> Usage:
        """Usage from ``message_start`` or the cumulative ``message_delta`` counts: a count
        the event does not repeat keeps its earlier value."""
        value = usage.get("input_tokens")
        if value.__class__ is int:
            self._input = value
        value = usage.get("cache_creation_input_tokens")
        if value.__class__ is int:
            self._cache_write = value
        value = usage.get("cache_read_input_tokens")
        if value.__class__ is int:
            self._cache_read = value
        value = usage.get("output_tokens")
        if value.__class__ is int:
            self._output = value
        prompt = None
        if self._input is not None:
            prompt = self._input + (self._cache_write or 0) + (self._cache_read or 0)
        total = None if prompt is None or self._output is None else prompt + self._output
        return Usage(
            input_tokens=prompt,
            output_tokens=self._output,
            total_tokens=total,
            cached_tokens=self._cache_read,
            raw=usage,
        )

    def _stop(self, payload: dict[str, Any], out: list[Event]) -> None:
        # a tool_use block the stream never stopped
        out.extend(self._tool_call(i, self._tools[i], payload) for i in sorted(self._tools))
        self._tools.clear()
        self._open_bytes = 0
        native = self._stop_reason
        reason: FinishReason = STOP_REASONS.get(native, "stop") if native else "stop"
        out.append(Finished(reason=reason, native_reason=native, raw=payload))
        self.done = True
