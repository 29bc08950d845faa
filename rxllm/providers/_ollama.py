"""Ollama's native API (``POST /api/chat``, NDJSON). wire-formats.md section 5.

Every line is one JSON object. Chat lines carry ``message {role, content, thinking?,
tool_calls?}``; ``/api/generate`` lines carry ``response`` and ``thinking``. Tool calls arrive
whole, with ``function.arguments`` already an object. The last line has ``done: true``,
``done_reason`` and the token counts. A failure after the 200 status is a line
``{"error": "..."}``. (Ollama's OpenAI-compatible ``/v1`` endpoint is the ``"openai"``
dialect.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

from rxllm.errors import (
    ConfigError,
    FrameTooLarge,
    MalformedFrame,
    Overloaded,
    ProviderError,
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
from rxllm.request import Request
from rxllm.wire import DEFAULT_MAX_EVENT_BYTES

from ._base import (
    DialectBase,
    HttpCall,
    NDJSONStreamDecoder,
    StreamDecoder,
    body_snippet,
    load_json_body,
    make_error,
)
from ._tools import MAX_ARGUMENTS_BYTES, parse_arguments

__all__ = ["OllamaDialect", "ollama_messages", "ollama_tools"]

DONE_REASONS: Final[Mapping[str, FinishReason]] = {"stop": "stop", "length": "length"}
"""``done_reason`` -> finish reason; any other reason (``load``, ``unload``...) is ``stop``."""


def ollama_messages(request: Request) -> list[dict[str, Any]]:
    """The request's messages in ``/api/chat`` shape.

    An assistant's tool calls carry ``function.arguments`` as an object; a tool result is a
    ``role: "tool"`` message naming the tool (``tool_name``, from the message's ``name`` or
    the earlier call with the same id) and the ``tool_call_id``.
    """
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for m in request.messages:
        msg: dict[str, Any] = {"role": m.role, "content": m.content or ""}
        if m.tool_calls:
            calls = []
            for c in m.tool_calls:
                call: dict[str, Any] = {
                    "function": {"name": c.name, "arguments": dict(c.arguments)}
                }
                if c.id:
                    call["id"] = c.id
                    names[c.id] = c.name
                calls.append(call)
            msg["tool_calls"] = calls
        if m.role == "tool":
            tool_name = m.name or names.get(m.tool_call_id or "")
            if tool_name:
                msg["tool_name"] = tool_name
            msg["tool_call_id"] = m.tool_call_id
        out.append(msg)
    return out


def ollama_tools(request: Request) -> list[dict[str, Any]]:
    """The request's tools (``{"type": "function", "function": {...}}``, as OpenAI)."""
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


def inband_error(err: Any, *, provider: str) -> ProviderError:
    """Map an ``{"error": "..."}`` line sent inside a 200 stream to a typed error.

    The model failed while generating: a retryable ``ServerError`` (``Overloaded`` when the
    text says the server is busy or overloaded).
    """
    if isinstance(err, Mapping):  # some proxies nest it: {"error": {"message": ...}}
        err = err.get("message") or err.get("error") or "error in stream"
    message = str(err or "error in stream")
    lower = message.lower()
    busy = "overloaded" in lower or "server busy" in lower
    return make_error(200, message, provider=provider, cls=Overloaded if busy else ServerError)


class OllamaDialect(DialectBase):
    """Ollama's native ``/api/chat`` with ``stream: true``.

    ``temperature``, ``max_tokens`` (as ``num_predict``) and ``stop`` go into ``options``.
    ``extra`` is merged into the body's top level (``{"think": True, "keep_alive": "5m"}``),
    except that an ``"options"`` mapping in ``extra`` is merged into the generated
    ``options`` (``extra={"options": {"num_ctx": 8192, "top_k": 20}}``; its keys win).
    Ollama has no ``tool_choice``: ``"auto"`` is the default, ``"none"`` sends no tools, and
    ``"required"`` or a tool name raise ``ConfigError``.
    """

    name = "ollama"
    default_base_url = "http://127.0.0.1:11434"
    api_key_env = ()
    request_id_header = "x-request-id"
    stream_content_type = "application/x-ndjson"

    def build_call(
        self, request: Request, *, model: str, base_url: str, api_key: str | None
    ) -> HttpCall:
        """POST ``{base_url}/api/chat`` with the request as a streaming body."""
        choice = request.tool_choice
        if choice not in (None, "auto", "none"):
            raise ConfigError(f"Ollama does not support tool_choice={choice!r}")
        body: dict[str, Any] = {"model": model, "messages": ollama_messages(request)}
        if request.tools and choice != "none":
            body["tools"] = ollama_tools(request)
        if request.response_schema is not None:
            body["format"] = dict(request.response_schema)
        options: dict[str, Any] = {}
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        if request.stop:
            options["stop"] = list(request.stop)
        body["stream"] = True
        extra = dict(request.extra)
        extra_options = extra.pop("options", None)
        if isinstance(extra_options, Mapping):
            options.update(extra_options)
        elif extra_options is not None:
            raise ConfigError("extra['options'] must be a mapping of Ollama model options")
        if options:
            body["options"] = options
        body.update(extra)
        headers = {"Content-Type": "application/json", "Accept": "application/x-ndjson"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        return HttpCall("POST", base_url.rstrip("/") + "/api/chat", headers, orjson.dumps(body))

    def stream_decoder(
        self, *, content_type: str, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    ) -> StreamDecoder:
        """NDJSON; a non-streamed ``application/json`` answer is one line of the same shape."""
        return OllamaStreamDecoder(max_event_bytes=max_event_bytes, provider=self.name)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """``{"error": "..."}`` (or any text) with 400/404/429/500/502... to a typed error."""
        data = load_json_body(body)
        err = data.get("error") if isinstance(data, Mapping) else None
        if isinstance(err, Mapping):
            err = err.get("message")
        if isinstance(err, str) and err:
            message = err
        else:
            message = body_snippet(body) or f"HTTP {status}"
        return make_error(status, message, headers=headers, provider=self.name)


class OllamaStreamDecoder(NDJSONStreamDecoder):
    """Decodes ``/api/chat`` and ``/api/generate`` NDJSON objects into rxllm events."""

    __slots__ = ("_calls", "_provider")

    def __init__(
        self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES, provider: str = "ollama"
    ) -> None:
        super().__init__(max_event_bytes=max_event_bytes)
        self._calls = 0
        self._provider = provider

    def on_object(self, obj: Any, out: list[Event]) -> None:
        """One NDJSON line: content, whole tool calls, the final ``done`` line or an error."""
        if obj.__class__ is not dict:
            raise MalformedFrame(
                "an Ollama stream line is not a JSON object", frame=orjson.dumps(obj).decode()
            )
        try:
            self._object(obj, out)
        except (AttributeError, TypeError, KeyError, IndexError) as exc:
            raise MalformedFrame(
                f"an Ollama stream line has an unexpected shape: {exc}",
                frame=orjson.dumps(obj).decode(),
            ) from None

    def _object(self, obj: dict[str, Any], out: list[Event]) -> None:
        if "error" in obj:
            raise inband_error(obj["error"], provider=self._provider)
        message = obj.get("message")
        if message is not None:  # /api/chat
            thinking = message.get("thinking")
            content = message.get("content")
            calls = message.get("tool_calls")
        else:  # /api/generate
            thinking = obj.get("thinking")
            content = obj.get("response")
            calls = None
        if thinking:
            out.append(_reasoning_delta(_str(thinking), obj))
        if content:
            out.append(_text_delta(_str(content), obj))
        if calls:
            for tc in calls:
                self._tool_call(tc, obj, out)
        if obj.get("done") is True:
            self._done(obj, out)

    def _tool_call(self, tc: Mapping[str, Any], raw: Any, out: list[Event]) -> None:
        fn = tc["function"]
        name = fn.get("name")
        args = fn.get("arguments")
        if args is None or args == "":
            args = {}
        elif isinstance(args, str):  # not Ollama's shape, but some servers send a string
            args = parse_arguments(args, name=name)
        if not isinstance(args, dict):
            raise MalformedFrame(f"tool call {name!r} arguments are not a JSON object")
        if len(orjson.dumps(args)) > MAX_ARGUMENTS_BYTES:
            raise FrameTooLarge(
                f"tool call {name!r} arguments are larger than {MAX_ARGUMENTS_BYTES} bytes",
                limit=MAX_ARGUMENTS_BYTES,
            )
        index = fn.get("index")
        if not isinstance(index, int) or isinstance(index, bool):
            index = self._calls
        self._calls += 1
        call_id = tc.get("id")
        out.append(
            ToolCall(
                index=index,
                id=call_id if isinstance(call_id, str) and call_id else None,
                name=_str(name or ""),
                arguments=args,
                raw=raw,
            )
        )

    def _done(self, obj: Mapping[str, Any], out: list[Event]) -> None:
        prompt, completion = obj.get("prompt_eval_count"), obj.get("eval_count")
        if prompt is not None or completion is not None:
            out.append(
                Usage(
                    input_tokens=prompt,
                    output_tokens=completion,
                    total_tokens=prompt + completion
                    if isinstance(prompt, int) and isinstance(completion, int)
                    else None,
                    raw=obj,
                )
            )
        native = obj.get("done_reason")
        reason: FinishReason
        if self._calls:
            reason = "tool_calls"
        else:
            reason = DONE_REASONS.get(str(native), "stop")
        out.append(
            Finished(reason=reason, native_reason=None if native is None else str(native), raw=obj)
        )
        self.done = True


def _str(value: Any) -> str:
    if value.__class__ is not str:
        raise TypeError(f"expected a string, not {type(value).__name__}")
    return value
