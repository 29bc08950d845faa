"""A whole answer, folded from the event stream: ``Response`` and ``Accumulator``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .events import (
    Event,
    Finished,
    FinishReason,
    ReasoningDelta,
    Started,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)

__all__ = ["Accumulator", "PendingToolCall", "Response"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PendingToolCall:
    """A tool call whose arguments were still streaming when the stream ended."""

    index: int
    id: str | None
    name: str | None
    arguments: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """Everything a stream said, folded into one value.

    ``finish_reason`` is ``None`` for a stream that did not finish (the ``partial`` of a
    ``StreamInterrupted``); ``pending_tool_calls`` then holds calls cut off mid-arguments.
    """

    text: str = ""
    reasoning: str = ""
    reasoning_signature: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    pending_tool_calls: tuple[PendingToolCall, ...] = ()
    finish_reason: FinishReason | None = None
    native_finish_reason: str | None = None
    usage: Usage | None = None
    provider: str | None = None
    model: str | None = None
    request_id: str | None = None

    @property
    def input_tokens(self) -> int | None:
        """Prompt tokens, if the provider reported them."""
        return self.usage.input_tokens if self.usage else None

    @property
    def output_tokens(self) -> int | None:
        """Completion tokens, if the provider reported them."""
        return self.usage.output_tokens if self.usage else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tool call arguments stay objects)."""
        return {
            "text": self.text,
            "reasoning": self.reasoning,
            "reasoning_signature": self.reasoning_signature,
            "tool_calls": [
                {"index": c.index, "id": c.id, "name": c.name, "arguments": c.arguments}
                for c in self.tool_calls
            ],
            "finish_reason": self.finish_reason,
            "native_finish_reason": self.native_finish_reason,
            "usage": None
            if self.usage is None
            else {
                "input_tokens": self.usage.input_tokens,
                "output_tokens": self.usage.output_tokens,
                "total_tokens": self.usage.total_tokens,
            },
            "provider": self.provider,
            "model": self.model,
        }


class Accumulator:
    """Folds events into a ``Response``, one ``add`` at a time; cheap enough per token.

    ``content_seen`` tells whether a content-bearing event has been added (the first token).
    """

    __slots__ = (
        "_calls",
        "_finished",
        "_pending",
        "_reasoning",
        "_signature",
        "_started",
        "_text",
        "_usage",
        "content_seen",
    )

    def __init__(self) -> None:
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._signature: str | None = None
        self._calls: list[ToolCall] = []
        self._pending: dict[int, list[Any]] = {}
        self._usage: Usage | None = None
        self._finished: Finished | None = None
        self._started: Started | None = None
        self.content_seen = False

    def add(self, event: Event | object) -> None:
        """Fold one event in; anything that is not an rxllm event only counts as content."""
        tp = type(event)
        if tp is TextDelta:
            self._text.append(event.text)  # type: ignore[union-attr]
            self.content_seen = True
        elif tp is ReasoningDelta:
            ev: Any = event
            if ev.text:
                self._reasoning.append(ev.text)
            if ev.signature:
                self._signature = ev.signature
            self.content_seen = True
        elif tp is ToolCallDelta:
            d: Any = event
            slot = self._pending.get(d.index)
            if slot is None:
                self._pending[d.index] = [d.id, d.name, [d.arguments]]
            else:
                slot[0] = slot[0] or d.id
                slot[1] = slot[1] or d.name
                slot[2].append(d.arguments)
            self.content_seen = True
        elif tp is ToolCall:
            call: Any = event
            self._calls.append(call)
            self._pending.pop(call.index, None)
            self.content_seen = True
        elif tp is Usage:
            self._usage = event  # type: ignore[assignment]
        elif tp is Finished:
            self._finished = event  # type: ignore[assignment]
        elif tp is Started:
            self._started = event  # type: ignore[assignment]
        else:
            self.content_seen = True

    def extend(self, events: Iterable[Event | object]) -> None:
        """Fold many events in."""
        for event in events:
            self.add(event)

    @property
    def text(self) -> str:
        """The text so far."""
        return "".join(self._text)

    def response(self) -> Response:
        """The ``Response`` folded so far (call again after more ``add``: it is a snapshot)."""
        started, finished = self._started, self._finished
        return Response(
            text="".join(self._text),
            reasoning="".join(self._reasoning),
            reasoning_signature=self._signature,
            tool_calls=tuple(self._calls),
            pending_tool_calls=tuple(
                PendingToolCall(index=i, id=s[0], name=s[1], arguments="".join(s[2]))
                for i, s in sorted(self._pending.items())
            ),
            finish_reason=finished.reason if finished else None,
            native_finish_reason=finished.native_reason if finished else None,
            usage=self._usage,
            provider=started.provider if started else None,
            model=started.model if started else None,
            request_id=started.request_id if started else None,
        )
