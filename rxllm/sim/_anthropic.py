"""Anthropic Messages streaming (wire-formats.md section 3).

``event: X`` plus ``data: {...}`` (``data.type`` repeats X): ``message_start``, a ``ping``,
then per content block ``content_block_start`` / ``content_block_delta`` ... /
``content_block_stop`` (a thinking block ends with one ``signature_delta``; a tool_use block
streams ``input_json_delta`` fragments, the first of them ``""``), more ``ping`` events
sprinkled between deltas, ``message_delta`` (stop reason and cumulative usage) and
``message_stop``. Like real traffic, some payloads carry spaces before their final ``}``.
An in-band error is ``event: error`` and the stream ends, with no ``message_stop``.
"""

from __future__ import annotations

from collections.abc import Iterator

from ._render import Ctx, Ev, Renderer, dumps, override
from ._scenario import Scenario

__all__ = ["AnthropicRenderer"]

_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "content_filter": "refusal",
    "tool_calls": "tool_use",
}

# status -> (error.type, message)
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "model: {model}"),
    408: ("timeout_error", "Request timed out."),
    409: ("invalid_request_error", "Conflict."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    422: ("invalid_request_error", "Unprocessable request."),
    429: (
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of 50 requests per "
        "minute. Please try again later.",
    ),
    500: ("api_error", "Internal server error"),
    502: ("api_error", "Bad gateway"),
    503: ("overloaded_error", "Overloaded"),
    504: ("timeout_error", "Gateway timeout"),
    529: ("overloaded_error", "Overloaded"),
}

_PING = b'{"type": "ping"}'


def _pad(payload: bytes, n: int) -> bytes:
    """Spaces before the final ``}``, as Anthropic's encoder leaves them."""
    return payload[:-1] + b" " * n + b"}"


def anthropic_error(status: int, scenario: Scenario, model: str) -> dict[str, object]:
    """The ``error`` object for ``status`` with the scenario's overrides. An ``error_code``
    ending in ``_error`` (or ``request_too_large``) replaces ``error.type``; any other code
    goes to ``error.details.error_code`` (``enforced_spend_limit_reached``...)."""
    etype, message = _ERRORS.get(status) or (
        ("api_error", "Internal server error") if status >= 500 else ("invalid_request_error", "")
    )
    code, message = override(scenario, None, message.replace("{model}", model))
    error: dict[str, object] = {"type": etype, "message": message or f"HTTP {status}"}
    if code is not None:
        if code.endswith("_error") or code == "request_too_large":
            error["type"] = code
        else:
            error["details"] = {"error_code": code}
    return error


class AnthropicRenderer(Renderer):
    """``POST /v1/messages``."""

    dialect = "anthropic"

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(ctx)
        self.message_id = "msg_" + ctx.uid
        self.block = -1  # index of the open content block
        self.deltas = 0
        self.pads = 0
        self._ping_every = ctx.scenario.ping_every

    def _padded(self, payload: bytes) -> bytes:
        self.pads += 1
        return _pad(payload, (self.pads * 5 + 2) % 11 + 1)

    def headers(self) -> dict[str, str]:
        """Adds Anthropic's ``request-id``."""
        headers = super().headers()
        headers["request-id"] = self.ctx.request_id
        return headers

    def _usage(self, output_tokens: int) -> dict[str, int]:
        return {
            "input_tokens": self.plan.prompt_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output_tokens,
        }

    def preamble(self) -> Iterator[Ev]:
        """``message_start`` then a ``ping``."""
        message: dict[str, object] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.ctx.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": self._usage(1),
        }
        payload = self._padded(dumps({"type": "message_start", "message": message}))
        yield Ev(payload, 0, "message_start")
        yield Ev(_PING, 0, "ping")

    def _start(self, block: dict[str, object]) -> Iterator[Ev]:
        if self.block >= 0:
            yield self._stop()
        self.block += 1
        payload = dumps(
            {"type": "content_block_start", "index": self.block, "content_block": block}
        )
        yield Ev(payload, 0, "content_block_start")

    def _stop(self) -> Ev:
        payload = self._padded(b'{"type":"content_block_stop","index":%d}' % self.block)
        return Ev(payload, 0, "content_block_stop")

    def _deltas(self, kind: bytes, field: bytes, tokens: Iterator[str]) -> Iterator[Ev]:
        """Content deltas of the open block, a ``ping`` after every ``ping_every``."""
        pre = b'{"type":"content_block_delta","index":%d,"delta":{"type":"%s","%s":' % (
            self.block,
            kind,
            field,
        )
        feed = self.feed
        every = self._ping_every
        while True:
            text, n = feed.take(tokens)
            if not n:
                return
            if kind == b"thinking_delta":
                self.reasoning_tokens += n
            elif kind == b"text_delta":
                self.text_tokens += n
            else:
                self.tool_tokens += n
            yield Ev(pre + dumps(text) + b"}}", n, "content_block_delta")
            self.deltas += 1
            if every and self.deltas % every == 0:
                yield Ev(_PING, 0, "ping")

    def body(self) -> Iterator[Ev]:
        """Thinking, text and tool_use blocks, in that order."""
        plan = self.plan
        if plan.reasoning is not None:
            yield from self._start({"type": "thinking", "thinking": "", "signature": ""})
            yield from self._deltas(b"thinking_delta", b"thinking", plan.reasoning)
            sig = {"type": "signature_delta", "signature": plan.signature}
            payload = dumps({"type": "content_block_delta", "index": self.block, "delta": sig})
            yield Ev(payload, 0, "content_block_delta")
        if plan.text is not None:
            yield from self._start({"type": "text", "text": ""})
            yield from self._deltas(b"text_delta", b"text", plan.text)
        for call in plan.tool_calls:
            block = {"type": "tool_use", "id": call.id or "toolu_" + call.hex, "name": call.name}
            yield from self._start({**block, "input": {}})
            yield Ev(
                b'{"type":"content_block_delta","index":%d,"delta":'
                b'{"type":"input_json_delta","partial_json":""}}' % self.block,
                0,
                "content_block_delta",
            )
            yield from self._deltas(b"input_json_delta", b"partial_json", iter(call.tokens))

    def closing(self) -> Iterator[Ev]:
        """The last ``content_block_stop``, ``message_delta`` and ``message_stop``."""
        if self.block >= 0:
            yield self._stop()
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": _STOP[self.plan.finish], "stop_sequence": None},
            "usage": self._usage(self.output_tokens),
        }
        yield Ev(self._padded(dumps(delta)), 0, "message_delta")
        yield Ev(self._padded(b'{"type":"message_stop"}'), 0, "message_stop")

    def inband_error(self) -> Iterator[Ev]:
        """``event: error`` with an ``overloaded_error``; the stream then ends."""
        scenario = self.ctx.scenario
        error = anthropic_error(529, scenario, self.ctx.model)
        body = {
            "type": "error",
            "error": {"details": error.pop("details", None), **error},
            "request_id": self.ctx.request_id,
        }
        yield Ev(dumps(body), 0, "error")

    @classmethod
    def error_response(
        cls, status: int, scenario: Scenario, *, model: str, request_id: str, array: bool = False
    ) -> tuple[bytes, str, dict[str, str]]:
        """``{"type":"error","error":{"type","message"},"request_id"}`` plus the
        ``request-id`` header (and ``x-should-retry: true`` on 529, as the API sends)."""
        body = {
            "type": "error",
            "error": anthropic_error(status, scenario, model),
            "request_id": request_id,
        }
        extra = {"request-id": request_id}
        if status == 529:
            extra["x-should-retry"] = "true"
        return dumps(body), "application/json", extra
