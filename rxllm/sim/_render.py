"""The renderer seam: one subclass per provider turns a ``Plan`` into wire events.

A renderer yields ``Ev`` tuples (payload bytes, content tokens carried, SSE event name) in
four phases: ``preamble`` (lifecycle events sent with the headers), ``body`` (the content,
where the engine paces and injects faults), ``closing`` (finish, usage, terminator) and
``inband_error`` (the provider's error event). ``frame`` adds the provider's framing; the
engine frames every event itself so that it can corrupt a payload first (``malformed_at``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import orjson

from ._output import Feed, Plan, Prompt
from ._scenario import Scenario

__all__ = ["EPOCH", "RAW", "Ctx", "Ev", "Renderer", "dumps", "override", "pretty", "usage_numbers"]

EPOCH = 1_735_689_600
"""The fixed ``created`` time of every simulated response (2025-01-01T00:00:00Z), so that
the same scenario always gives the same bytes."""

RAW = "\x00raw"
"""The event name of bytes written as they are (Gemini's array brackets)."""

dumps = orjson.dumps


class Ev(NamedTuple):
    """One event to write: its payload, the content tokens it carries, its SSE name."""

    payload: bytes
    tokens: int = 0
    event: str | None = None


@dataclass(slots=True)
class Ctx:
    """Everything a renderer needs about the request being answered."""

    scenario: Scenario
    prompt: Prompt
    plan: Plan
    feed: Feed
    model: str
    uid: str
    request_id: str
    sse: bool = True
    generate: bool = False


class Renderer:
    """Base class: SSE framing, output counters and the shared phases."""

    dialect: ClassVar[str] = ""
    content_type: ClassVar[str] = "text/event-stream; charset=utf-8"
    retry_after_ms: ClassVar[bool] = False

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.plan = ctx.plan
        self.feed = ctx.feed
        self.reasoning_tokens = 0
        self.text_tokens = 0
        self.tool_tokens = 0

    @property
    def output_tokens(self) -> int:
        """Content tokens streamed so far (reasoning, text and tool arguments)."""
        return self.reasoning_tokens + self.text_tokens + self.tool_tokens

    def headers(self) -> dict[str, str]:
        """Response headers of a successful stream."""
        return {
            "content-type": self.content_type,
            "cache-control": "no-cache",
            "x-request-id": self.ctx.request_id,
        }

    def preamble(self) -> Iterator[Ev]:
        """Lifecycle events sent right after the headers."""
        return iter(())

    def body(self) -> Iterator[Ev]:
        """The content events."""
        raise NotImplementedError

    def closing(self) -> Iterator[Ev]:
        """Finish, usage and terminator events."""
        raise NotImplementedError

    def inband_error(self) -> Iterator[Ev]:
        """The provider's error event(s) inside a 200 stream (scenario overrides applied)."""
        raise NotImplementedError

    def frame(self, payload: bytes, event: str | None) -> bytes:
        """SSE framing: what ``rxllm.wire.encode`` writes for a payload without line breaks
        (JSON from orjson never contains a raw CR or LF)."""
        if event is None:
            return b"data: " + payload + b"\n\n"
        if event == RAW:
            return payload
        return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"

    @classmethod
    def error_response(
        cls, status: int, scenario: Scenario, *, model: str, request_id: str, array: bool = False
    ) -> tuple[bytes, str, dict[str, str]]:
        """The body, content type and extra headers of an HTTP error response for
        ``status`` (scenario overrides applied); ``array`` is Gemini's JSON-array endpoint."""
        raise NotImplementedError


def pretty(value: Any) -> bytes:
    """JSON with 2-space indent (how OpenAI and Google print error bodies)."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2)


def override(scenario: Scenario, code: str | None, message: str) -> tuple[str | None, str]:
    """Apply the scenario's ``error_code``/``error_message`` overrides."""
    return (
        scenario.error_code if scenario.error_code is not None else code,
        scenario.error_message if scenario.error_message is not None else message,
    )


def usage_numbers(r: Renderer) -> Mapping[str, int]:
    """Prompt, completion and total token counts for a renderer's output so far."""
    prompt = r.plan.prompt_tokens
    out = r.output_tokens
    return {"prompt": prompt, "completion": out, "total": prompt + out}
