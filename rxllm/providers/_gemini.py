"""Google Gemini ``streamGenerateContent``, SSE (``?alt=sse``) or one streamed JSON array.

wire-formats.md section 4. Each chunk is a ``GenerateContentResponse``; only
``candidates[0]`` is read. Parts arrive whole: ``{text}``, ``{thought: true, text}``, a
sibling ``thoughtSignature`` and ``{functionCall: {name, args, id?}}`` (arguments already an
object, so a complete ``ToolCall`` at once). There is no ``[DONE]``: with SSE framing the
chunk carrying ``finishReason`` ends the stream; with array framing the closing ``]`` does
(and a finish reason must have been seen).

Normalization choices:

- ``usageMetadata`` holds running totals on every chunk: the last value wins, nothing is
  summed, and a ``Usage`` is emitted only when a count changed. ``output_tokens`` is
  ``candidatesTokenCount + thoughtsTokenCount`` (thinking is billed as output, and OpenAI and
  Anthropic count reasoning in their output tokens too); ``reasoning_tokens`` is
  ``thoughtsTokenCount`` alone.
- ``finishReason`` ``STOP`` is ``tool_calls`` when the stream made function calls.
- A response schema is sent as ``generationConfig.responseJsonSchema`` (full JSON Schema)
  with ``responseMimeType: application/json``; tool parameters likewise go in
  ``parametersJsonSchema`` rather than the OpenAPI-subset ``parameters``.
- A 429 is ``QuotaExhausted`` when it names a per-day quota, or when its message says a
  quota was exceeded and it gives no ``RetryInfo`` delay; otherwise it is ``RateLimited``
  with ``retry_after`` from ``Retry-After`` or ``RetryInfo.retryDelay``. (Per-minute limits
  also say "You exceeded your current quota" but carry a retry delay: waiting fixes them.)
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Final
from urllib.parse import quote

import orjson

from rxllm.errors import (
    AuthenticationError,
    BadRequest,
    ConfigError,
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
    Usage,
    _reasoning_delta,
    _text_delta,
)
from rxllm.request import Message, Request
from rxllm.wire import DEFAULT_MAX_EVENT_BYTES, SSEEvent

from ._base import (
    QUOTA_MARKERS,
    DialectBase,
    HttpCall,
    JSONArrayStreamDecoder,
    SSEStreamDecoder,
    StreamDecoder,
    body_snippet,
    error_class_for_status,
    load_json_body,
    make_error,
    merge_extra,
)

__all__ = [
    "GeminiArrayDecoder",
    "GeminiDialect",
    "GeminiStreamDecoder",
    "gemini_contents",
    "gemini_error",
    "gemini_tool_config",
    "gemini_tools",
]

FINISH_REASONS: Final[Mapping[str, FinishReason]] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
"""Gemini ``finishReason`` to the normalized reason (anything else is ``stop``)."""

STATUS_CLASSES: Final[Mapping[str, type[ProviderError]]] = {
    "INVALID_ARGUMENT": BadRequest,
    "FAILED_PRECONDITION": BadRequest,
    "OUT_OF_RANGE": BadRequest,
    "NOT_FOUND": BadRequest,
    "UNAUTHENTICATED": AuthenticationError,
    "PERMISSION_DENIED": AuthenticationError,
    "RESOURCE_EXHAUSTED": RateLimited,
    "UNAVAILABLE": Overloaded,
    "INTERNAL": ServerError,
    "DEADLINE_EXCEEDED": ServerError,
}
"""Google RPC status to the error class, when an error carries no HTTP ``code``."""

_QUOTA_WORDS = (*QUOTA_MARKERS, "quota exceeded")
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?)s\s*")
_loads = orjson.loads


# --- request --------------------------------------------------------------------------------


def gemini_contents(request: Request) -> list[dict[str, Any]]:
    """The conversation as ``contents``: ``user``/``model`` turns of parts.

    Assistant tool calls become ``functionCall`` parts; ``tool`` messages become
    ``functionResponse`` parts of a user turn, named by the message's ``name`` or by the
    earlier call with the same id (a ``ConfigError`` when neither names the function). A
    tool result that is a JSON object is sent as the response; any other text as
    ``{"output": text}``. Consecutive turns of the same role are merged; an empty turn is a
    ``ConfigError``.
    """
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for message in request.conversation:
        role, parts = _parts(message, names)
        if out and out[-1]["role"] == role:
            out[-1]["parts"].extend(parts)
        else:
            out.append({"role": role, "parts": parts})
    for turn in out:
        if not turn["parts"]:
            raise ConfigError(f"an empty {turn['role']} message cannot be sent to Gemini")
    return out


def _parts(m: Message, names: dict[str, str]) -> tuple[str, list[dict[str, Any]]]:
    if m.role == "tool":
        name = m.name or names.get(m.tool_call_id or "")
        if not name:
            raise ConfigError(
                f"the tool result for call {m.tool_call_id!r} needs the function name "
                "(set Message.name, or include the assistant message that made the call)"
            )
        response: dict[str, Any] = {"name": name, "response": _tool_response(m.content)}
        if m.tool_call_id:
            response["id"] = m.tool_call_id
        return "user", [{"functionResponse": response}]
    parts: list[dict[str, Any]] = []
    if m.content:
        parts.append({"text": m.content})
    if m.role != "assistant":
        return "user", parts
    for call in m.tool_calls:
        names[call.id] = call.name
        fc: dict[str, Any] = {"name": call.name, "args": dict(call.arguments)}
        if call.id:
            fc["id"] = call.id
        parts.append({"functionCall": fc})
    return "model", parts


def _tool_response(content: str | None) -> dict[str, Any]:
    if content:
        try:
            value = _loads(content)
        except orjson.JSONDecodeError:
            pass
        else:
            if isinstance(value, dict):
                return value
    return {"output": content or ""}


def gemini_tools(request: Request) -> list[dict[str, Any]]:
    """The request's tools as one ``{"functionDeclarations": [...]}`` entry."""
    declarations: list[dict[str, Any]] = []
    for t in request.tools:
        decl: dict[str, Any] = {"name": t.name}
        if t.description:
            decl["description"] = t.description
        decl["parametersJsonSchema"] = dict(t.parameters)
        declarations.append(decl)
    return [{"functionDeclarations": declarations}]


def gemini_tool_config(choice: str) -> dict[str, Any]:
    """``auto`` / ``none`` / ``required`` (``ANY``), or one named function (``ANY`` limited
    to that name), as ``toolConfig``."""
    modes = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
    if choice in modes:
        return {"functionCallingConfig": {"mode": modes[choice]}}
    return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [choice]}}


_VERSION_SUFFIX = re.compile(r"/v1(?:alpha|beta)?\d*$")


def _model_path(base_url: str, model: str) -> str:
    base = base_url.rstrip("/")
    if not _VERSION_SUFFIX.search(base):
        base += "/v1beta"
    # "gemini-2.5-flash" -> models/gemini-2.5-flash; "tunedModels/x" and "models/x" as is.
    path = model if "/" in model else f"models/{model}"
    return f"{base}/{quote(path, safe='/-._~')}"


# --- errors ---------------------------------------------------------------------------------


def gemini_error(
    status: int,
    err: Any,
    *,
    headers: Mapping[str, str] | None = None,
    provider: str = "gemini",
) -> ProviderError:
    """Map a Google API error object ``{"code", "message", "status", "details"?}``.

    The class follows the error's HTTP ``code`` (else its ``status`` string, else the
    response ``status``); ``code`` on the result is the ``status`` string
    (``RESOURCE_EXHAUSTED``...). ``status`` on the result is the response's (200 for an
    error inside a stream). See the module docstring for 429 and quotas.
    """
    if not isinstance(err, Mapping):
        err = {"message": str(err)}
    message = str(err.get("message") or "")
    rpc_status = err.get("status") if isinstance(err.get("status"), str) else None
    http = err.get("code")
    if not isinstance(http, int) or http < 400:
        http = status if status >= 400 else None
    cls: type[ProviderError]
    if http is not None:
        cls = error_class_for_status(http)
        if cls is ServerError and rpc_status == "UNAVAILABLE":
            cls = Overloaded
    else:
        cls = STATUS_CLASSES.get(rpc_status or "", ServerError)
    details = err.get("details")
    retry_delay = _retry_delay(details)
    if cls is RateLimited:
        hay = f"{message} {_text(details)}".lower()
        per_day = "perday" in hay.replace("_", "").replace("-", "")
        if per_day or (retry_delay is None and any(w in hay for w in _QUOTA_WORDS)):
            cls = QuotaExhausted
    code = rpc_status or (str(err["code"]) if err.get("code") is not None else None)
    error = make_error(
        status,
        message or (rpc_status or f"HTTP {status}"),
        code=code,
        headers=headers,
        provider=provider,
        cls=cls,
    )
    if error.retry_after is None and retry_delay is not None:
        error.retry_after = retry_delay
        if cls is QuotaExhausted:
            error.reset_at = time.time() + retry_delay
    return error


def _retry_delay(details: Any) -> float | None:
    """Seconds from a ``google.rpc.RetryInfo`` detail (``"retryDelay": "25s"``)."""
    if not isinstance(details, list):
        return None
    for item in details:
        if isinstance(item, Mapping) and "retryDelay" in item:
            delay = item["retryDelay"]
            if isinstance(delay, str):
                m = _DURATION.fullmatch(delay)
                if m:
                    return float(m.group(1))
            elif isinstance(delay, Mapping):  # {"seconds": 25, "nanos": 0}
                try:
                    return float(delay.get("seconds", 0)) + float(delay.get("nanos", 0)) / 1e9
                except (TypeError, ValueError):
                    return None
    return None


def _text(details: Any) -> str:
    if details is None:
        return ""
    try:
        return orjson.dumps(details).decode()[:4096]
    except TypeError:
        return ""


# --- the dialect ----------------------------------------------------------------------------


class GeminiDialect(DialectBase):
    """Gemini ``streamGenerateContent`` (wire-formats.md section 4)."""

    name = "gemini"
    default_base_url = "https://generativelanguage.googleapis.com"
    api_key_env: ClassVar[tuple[str, ...]] = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    request_id_header = "x-request-id"
    stream_content_type = "text/event-stream"

    def build_call(
        self, request: Request, *, model: str, base_url: str, api_key: str | None
    ) -> HttpCall:
        """POST ``{base_url}/v1beta/models/{model}:streamGenerateContent?alt=sse``.

        The key goes only into the ``x-goog-api-key`` header, never into the URL. A
        ``base_url`` that already ends in a version (``/v1beta``, ``/v1``) is used as is,
        and a model with a ``/`` (``tunedModels/...``) is used as the resource path.
        """
        body: dict[str, Any] = {"contents": gemini_contents(request)}
        system = request.system
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        if request.tools:
            body["tools"] = gemini_tools(request)
        if request.tool_choice:
            body["toolConfig"] = gemini_tool_config(request.tool_choice)
        config: dict[str, Any] = {}
        if request.temperature is not None:
            config["temperature"] = request.temperature
        if request.max_tokens is not None:
            config["maxOutputTokens"] = request.max_tokens
        if request.stop:
            config["stopSequences"] = list(request.stop)
        if request.response_schema is not None:
            config["responseMimeType"] = "application/json"
            config["responseJsonSchema"] = dict(request.response_schema)
        if config:
            body["generationConfig"] = config
        merge_extra(body, request.extra)
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream",
        }
        if api_key:
            headers["x-goog-api-key"] = api_key
        url = _model_path(base_url, model) + ":streamGenerateContent?alt=sse"
        return HttpCall("POST", url, headers, orjson.dumps(body))

    def stream_decoder(
        self, *, content_type: str, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    ) -> StreamDecoder:
        """JSON-array framing for ``application/json``, SSE otherwise."""
        lowered = content_type.lower()
        if "json" in lowered and "event-stream" not in lowered:
            return GeminiArrayDecoder(max_event_bytes=max_event_bytes, provider=self.name)
        return GeminiStreamDecoder(max_event_bytes=max_event_bytes, provider=self.name)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """``{"error": {"code", "message", "status"}}``, its array-wrapped form, or text."""
        data = load_json_body(body)
        if isinstance(data, list) and data:
            data = data[0]
        err = data.get("error") if isinstance(data, Mapping) else None
        if isinstance(err, Mapping):
            return gemini_error(status, err, headers=headers, provider=self.name)
        if isinstance(err, str):
            return make_error(status, err, headers=headers, provider=self.name)
        return make_error(
            status, body_snippet(body) or f"HTTP {status}", headers=headers, provider=self.name
        )


class _Chunks:
    """Translates ``GenerateContentResponse`` chunks; shared by both framings."""

    __slots__ = ("calls", "finished", "provider", "raw_usage", "usage")

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.calls = 0
        self.finished: str | None = None
        self.usage: tuple[int | None, ...] | None = None
        self.raw_usage: dict[str, Any] | None = None

    def translate(self, chunk: Any, out: list[Event]) -> None:
        """Append the events of one chunk; raise a typed error for an error object."""
        if chunk.__class__ is not dict:
            raise MalformedFrame("a Gemini stream chunk is not a JSON object", frame=_frame(chunk))
        try:
            self._translate(chunk, out)
        except (AttributeError, TypeError, KeyError, IndexError) as exc:
            # A JSON object of a shape no check below foresaw: still a typed error.
            raise MalformedFrame(
                f"a Gemini stream chunk has an unexpected shape: {exc}", frame=_frame(chunk)
            ) from None

    def _translate(self, chunk: dict[str, Any], out: list[Event]) -> None:
        if "error" in chunk:
            raise gemini_error(200, chunk["error"], provider=self.provider)
        candidates = chunk.get("candidates")
        finish = None
        if candidates:
            if not isinstance(candidates, list) or not isinstance(candidates[0], dict):
                raise MalformedFrame("Gemini candidates are not objects", frame=_frame(chunk))
            candidate = candidates[0]
            content = candidate.get("content")
            if isinstance(content, dict):
                parts = content.get("parts")
                if isinstance(parts, list):
                    for part in parts:
                        self._part(part, chunk, out)
            finish = candidate.get("finishReason")
        usage = chunk.get("usageMetadata")
        if isinstance(usage, dict):
            self._usage(usage, out)
        if isinstance(finish, str) and finish:
            self._finish(finish, finish, chunk, out)
        elif not candidates:
            feedback = chunk.get("promptFeedback")
            if isinstance(feedback, dict):
                block = feedback.get("blockReason")
                if isinstance(block, str) and block:
                    self._finish(block, None, chunk, out)

    def _part(self, part: Any, chunk: dict[str, Any], out: list[Event]) -> None:
        if part.__class__ is not dict:
            raise MalformedFrame("a Gemini part is not an object", frame=_frame(chunk))
        text = part.get("text")
        if text is not None and text.__class__ is not str:
            raise MalformedFrame("a Gemini part's text is not a string", frame=_frame(chunk))
        signature = part.get("thoughtSignature")
        sig = signature if isinstance(signature, str) and signature else None
        if part.get("thought") is True:
            if text or sig:
                out.append(_reasoning_delta(text or "", chunk, sig))
            return
        if sig:
            out.append(_reasoning_delta("", chunk, sig))
        if text:
            out.append(_text_delta(text, chunk))
        fc = part.get("functionCall")
        if fc is not None:
            self._call(fc, chunk, out)

    def _call(self, fc: Any, chunk: dict[str, Any], out: list[Event]) -> None:
        if not isinstance(fc, dict) or not isinstance(fc.get("name"), str):
            raise MalformedFrame("a Gemini functionCall has no name", frame=_frame(chunk))
        args = fc.get("args")
        if args is None:
            args = {}
        elif not isinstance(args, dict):
            raise MalformedFrame(
                f"functionCall {fc['name']!r} args are not a JSON object", frame=_frame(chunk)
            )
        call_id = fc.get("id")
        out.append(
            ToolCall(
                index=self.calls,
                id=call_id if isinstance(call_id, str) and call_id else None,
                name=fc["name"],
                arguments=args,
                raw=chunk,
            )
        )
        self.calls += 1

    def _usage(self, usage: dict[str, Any], out: list[Event]) -> None:
        if usage == self.raw_usage:  # the usual case: the same running counts again
            return
        self.raw_usage = usage
        prompt, candidates, total, thoughts, cached = (
            _int(usage.get(k))
            for k in (
                "promptTokenCount",
                "candidatesTokenCount",
                "totalTokenCount",
                "thoughtsTokenCount",
                "cachedContentTokenCount",
            )
        )
        output = None
        if candidates is not None or thoughts is not None:
            output = (candidates or 0) + (thoughts or 0)
        key = (prompt, output, total, thoughts, cached)
        if key == self.usage:
            return
        self.usage = key
        out.append(
            Usage(
                input_tokens=prompt,
                output_tokens=output,
                total_tokens=total,
                reasoning_tokens=thoughts,
                cached_tokens=cached,
                raw=usage,
            )
        )

    def _finish(
        self, native: str, finish: str | None, chunk: dict[str, Any], out: list[Event]
    ) -> None:
        if self.finished == native:  # a repeated finishReason: one Finished is enough
            return
        self.finished = native
        reason: FinishReason
        if finish is None:  # promptFeedback.blockReason: the prompt itself was blocked
            reason = "content_filter"
        elif finish == "STOP" and self.calls:
            reason = "tool_calls"
        else:
            reason = FINISH_REASONS.get(finish, "stop")
        out.append(Finished(reason=reason, native_reason=native, raw=chunk))


def _int(value: Any) -> int | None:
    return value if value.__class__ is int else None


def _frame(chunk: Any) -> str:
    try:
        return orjson.dumps(chunk).decode()[:200]
    except TypeError:
        return repr(chunk)[:200]


class GeminiStreamDecoder(SSEStreamDecoder):
    """``?alt=sse`` framing: ``data: <chunk>`` events; ``done`` at the first finish reason."""

    __slots__ = ("_chunks",)

    def __init__(
        self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES, provider: str = "gemini"
    ) -> None:
        super().__init__(max_event_bytes=max_event_bytes)
        self._chunks = _Chunks(provider)

    def on_data(self, data: bytes, out: list[Event]) -> None:
        """One ``data:`` event: a ``GenerateContentResponse`` or an ``{"error": ...}``."""
        try:
            chunk = _loads(data)
        except orjson.JSONDecodeError:
            # SSE text is UTF-8 decoded with replacement: retry that way before giving up.
            text = data.decode("utf-8", "replace")
            if not text.strip():
                return
            try:
                chunk = _loads(text)
            except orjson.JSONDecodeError:
                raise MalformedFrame("a Gemini stream event is not JSON", frame=text) from None
        self._chunks.translate(chunk, out)
        if self._chunks.finished is not None:
            self.done = True

    def on_event(self, event: SSEEvent, out: list[Event]) -> None:
        """Gemini sends no ``event:`` lines; a typed event's data is read the same way."""
        self.on_data(event.data.encode(), out)


class GeminiArrayDecoder(JSONArrayStreamDecoder):
    """JSON-array framing (``application/json``): ``done`` at the closing ``]`` once a finish
    reason was seen; ``[{"error": ...}]`` raises the typed error."""

    __slots__ = ("_chunks",)

    def __init__(
        self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES, provider: str = "gemini"
    ) -> None:
        super().__init__(max_event_bytes=max_event_bytes)
        self._chunks = _Chunks(provider)

    def on_object(self, obj: Any, out: list[Event]) -> None:
        """One array element."""
        self._chunks.translate(obj, out)

    def feed(self, data: bytes) -> list[Event]:
        """Decode one read; see ``StreamDecoder``."""
        out = super().feed(data)
        if self.error is None and self._arr.done and self._chunks.finished is not None:
            self.done = True
        return out
