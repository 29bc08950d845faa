"""Google Gemini ``streamGenerateContent`` (wire-formats.md section 4).

With ``?alt=sse``: ``data: {GenerateContentResponse}`` events ending in CRLF CRLF, no
``[DONE]``; the chunk with ``finishReason`` ends the stream. Without it: ONE JSON array
streamed element by element, each element pretty-printed with a 2-space indent, elements
separated by ``\\n,\\r\\n`` and the array closed by ``\\n]``. Every chunk carries
``usageMetadata`` with running values, ``modelVersion`` and ``responseId``; thoughts are
``{"text", "thought": true}`` parts, the first answer part carries the ``thoughtSignature``,
and function calls arrive whole, all in one chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ._render import RAW, Ctx, Ev, Renderer, dumps, override, pretty
from ._scenario import Scenario

__all__ = ["GeminiRenderer"]

_FINISH = {
    "stop": "STOP",
    "length": "MAX_TOKENS",
    "content_filter": "SAFETY",
    "tool_calls": "STOP",
}

_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    422: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_CODES = {
    "INVALID_ARGUMENT": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: "API key not valid. Please pass a valid API key.",
    403: "The caller does not have permission",
    404: "models/{model} is not found for API version v1beta, or is not supported for "
    "generateContent.",
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}


def gemini_error(status: int, scenario: Scenario, model: str) -> dict[str, Any]:
    """``{"code", "message", "status"}`` for ``status``; an ``error_code`` override replaces
    ``status`` (a gRPC status name such as ``RESOURCE_EXHAUSTED``)."""
    grpc = _STATUS.get(status) or ("UNAVAILABLE" if status >= 500 else "FAILED_PRECONDITION")
    message = _MESSAGES.get(status) or f"HTTP {status}"
    code, message = override(scenario, grpc, message.replace("{model}", model))
    return {"code": status, "message": message, "status": code}


class GeminiRenderer(Renderer):
    """``POST /v1beta/models/{model}:streamGenerateContent`` (SSE or JSON array)."""

    dialect = "gemini"

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(ctx)
        self.response_id = ctx.uid[:22]
        self.elements = 0
        self.signature_sent = ctx.plan.reasoning is None
        self._dump = dumps if ctx.sse else pretty

    def headers(self) -> dict[str, str]:
        """``text/event-stream`` with ``content-disposition: attachment`` (SSE) or
        ``application/json; charset=UTF-8`` (array)."""
        headers = super().headers()
        if self.ctx.sse:
            headers["content-type"] = "text/event-stream"
            headers["content-disposition"] = "attachment"
        else:
            headers["content-type"] = "application/json; charset=UTF-8"
        return headers

    def frame(self, payload: bytes, event: str | None) -> bytes:
        """``data: ...\\r\\n\\r\\n``, or an array element with its separator."""
        if event == RAW:
            return payload
        if self.ctx.sse:
            return b"data: " + payload + b"\r\n\r\n"
        self.elements += 1
        return (b"[" if self.elements == 1 else b"\n,\r\n") + payload

    def _usage(self) -> dict[str, int]:
        usage = {
            "promptTokenCount": self.plan.prompt_tokens,
            "candidatesTokenCount": self.text_tokens + self.tool_tokens,
            "totalTokenCount": self.plan.prompt_tokens + self.output_tokens,
        }
        if self.reasoning_tokens:
            usage["thoughtsTokenCount"] = self.reasoning_tokens
        return usage

    def _chunk(self, parts: list[dict[str, Any]], finish: str | None = None) -> bytes:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
        if finish is not None:
            candidate["finishReason"] = finish
        candidate["index"] = 0
        return self._dump(
            {
                "candidates": [candidate],
                "usageMetadata": self._usage(),
                "modelVersion": self.ctx.model,
                "responseId": self.response_id,
            }
        )

    def _signed(self, part: dict[str, Any]) -> dict[str, Any]:
        if not self.signature_sent:
            self.signature_sent = True
            part["thoughtSignature"] = self.plan.signature
        return part

    def body(self) -> Iterator[Ev]:
        """Thought chunks, text chunks, then one chunk with every function call."""
        plan, feed = self.plan, self.feed
        if plan.reasoning is not None:
            while True:
                text, n = feed.take(plan.reasoning)
                if not n:
                    break
                self.reasoning_tokens += n
                yield Ev(self._chunk([{"text": text, "thought": True}]), n)
        if plan.text is not None:
            while True:
                text, n = feed.take(plan.text)
                if not n:
                    break
                self.text_tokens += n
                yield Ev(self._chunk([self._signed({"text": text})]), n)
        if plan.tool_calls:
            n = sum(len(call.tokens) for call in plan.tool_calls)
            feed.count(n)
            self.tool_tokens += n
            parts = [
                self._signed({"functionCall": {"name": call.name, "args": dict(call.arguments)}})
                for call in plan.tool_calls
            ]
            yield Ev(self._chunk(parts), n)

    def closing(self) -> Iterator[Ev]:
        """The chunk with ``finishReason`` (and, for the array, the closing ``]``)."""
        part = self._signed({"text": ""})
        yield Ev(self._chunk([part], _FINISH[self.plan.finish]))
        if not self.ctx.sse:
            yield Ev(b"\n]", 0, RAW)

    def inband_error(self) -> Iterator[Ev]:
        """``{"error": {...}}`` as an event (SSE) or as the array's last element."""
        scenario = self.ctx.scenario
        status = 503
        if scenario.error_code in _CODES:
            status = _CODES[scenario.error_code]
        yield Ev(self._dump({"error": gemini_error(status, scenario, self.ctx.model)}))
        if not self.ctx.sse:
            yield Ev(b"\n]", 0, RAW)

    @classmethod
    def error_response(
        cls, status: int, scenario: Scenario, *, model: str, request_id: str, array: bool = False
    ) -> tuple[bytes, str, dict[str, str]]:
        """``{"error": {"code", "message", "status"}}``, pretty-printed; array-wrapped on
        the JSON-array endpoint."""
        body = pretty({"error": gemini_error(status, scenario, model)})
        if array:
            return b"[" + body + b"\n]", "application/json; charset=UTF-8", {}
        return body + b"\n", "application/json; charset=UTF-8", {}
