"""Ollama's native ``/api/chat`` and ``/api/generate`` (wire-formats.md section 5).

NDJSON (``application/x-ndjson``): one JSON object per line. Chat lines carry ``message
{role, content, thinking?, tool_calls?}`` (tool calls whole, arguments an object), generate
lines carry ``response`` (and ``thinking``). The final object has ``done: true``,
``done_reason``, durations in nanoseconds, ``prompt_eval_count`` and ``eval_count``. An
in-band error is a ``{"error": "..."}`` line with the status still 200.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ._render import Ctx, Ev, Renderer, dumps, override
from ._scenario import Scenario

__all__ = ["OllamaRenderer"]

_DONE = {"stop": "stop", "length": "length", "content_filter": "stop", "tool_calls": "stop"}
_CREATED_AT = "2025-01-01T00:00:00.000000Z"  # EPOCH, as Ollama spells a time

_MESSAGES = {
    400: "invalid request",
    401: "unauthorized",
    403: "forbidden",
    404: 'model "{model}" not found, try pulling it first',
    429: "too many requests",
    500: "llama runner process has terminated: exit status 2",
    502: "bad gateway",
    503: "server busy, please try again.  maximum pending requests exceeded",
}
_INBAND = (
    "model runner has unexpectedly stopped, this may be due to resource limitations or "
    "an internal error, check ollama server logs for details"
)


class OllamaRenderer(Renderer):
    """``POST /api/chat`` and ``POST /api/generate``."""

    dialect = "ollama"
    content_type = "application/x-ndjson"

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(ctx)
        head = b'{"model":' + dumps(ctx.model) + b',"created_at":"' + _CREATED_AT.encode() + b'",'
        self._head = head
        if ctx.generate:
            self._text = head + b'"response":'
            self._think = head + b'"response":"","thinking":'
        else:
            self._text = head + b'"message":{"role":"assistant","content":'
            self._think = head + b'"message":{"role":"assistant","content":"","thinking":'
        self._tail = b',"done":false}' if ctx.generate else b'},"done":false}'

    def frame(self, payload: bytes, event: str | None) -> bytes:
        """One line."""
        return payload + b"\n"

    def body(self) -> Iterator[Ev]:
        """Thinking lines, text lines, then one line with every tool call."""
        plan, feed = self.plan, self.feed
        if plan.reasoning is not None:
            pre, post = self._think, self._tail
            while True:
                text, n = feed.take(plan.reasoning)
                if not n:
                    break
                self.reasoning_tokens += n
                yield Ev(pre + dumps(text) + post, n)
        if plan.text is not None:
            pre, post = self._text, self._tail
            while True:
                text, n = feed.take(plan.text)
                if not n:
                    break
                self.text_tokens += n
                yield Ev(pre + dumps(text) + post, n)
        if plan.tool_calls:
            n = sum(len(call.tokens) for call in plan.tool_calls)
            feed.count(n)
            self.tool_tokens += n
            calls = [
                {
                    "id": call.id or "call_" + call.hex[:8],
                    "function": {
                        "index": call.index,
                        "name": call.name,
                        "arguments": dict(call.arguments),
                    },
                }
                for call in plan.tool_calls
            ]
            if self.ctx.generate:
                line: dict[str, Any] = {"response": "", "tool_calls": calls}
            else:
                line = {"message": {"role": "assistant", "content": "", "tool_calls": calls}}
            yield Ev(self._head + dumps(line)[1:-1] + b',"done":false}', n)

    def closing(self) -> Iterator[Ev]:
        """The ``done: true`` line with the counts and durations."""
        tps = self.ctx.scenario.tokens_per_second or 50.0
        evals = self.output_tokens
        eval_ns = int(evals / tps * 1e9)
        prompt_ns = self.plan.prompt_tokens * 200_000
        load_ns = 1_000_000
        final: dict[str, Any] = (
            {"response": ""}
            if self.ctx.generate
            else {"message": {"role": "assistant", "content": ""}}
        )
        final.update(
            done_reason=_DONE[self.plan.finish],
            done=True,
            total_duration=load_ns + prompt_ns + eval_ns,
            load_duration=load_ns,
            prompt_eval_count=self.plan.prompt_tokens,
            prompt_eval_duration=prompt_ns,
            eval_count=evals,
            eval_duration=eval_ns,
        )
        yield Ev(self._head + dumps(final)[1:])

    def inband_error(self) -> Iterator[Ev]:
        """A ``{"error": "..."}`` line."""
        _, message = override(self.ctx.scenario, None, _INBAND)
        yield Ev(dumps({"error": message}))

    @classmethod
    def error_response(
        cls, status: int, scenario: Scenario, *, model: str, request_id: str, array: bool = False
    ) -> tuple[bytes, str, dict[str, str]]:
        """``{"error": "..."}``."""
        message = _MESSAGES.get(status) or f"HTTP {status}"
        _, message = override(scenario, None, message.replace("{model}", model))
        return dumps({"error": message}), "application/json; charset=utf-8", {}
