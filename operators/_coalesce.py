"""``coalesce``: lossless, demand-driven merging of text and reasoning deltas.

Built on the demand gate (``._flow``): while the sink keeps up every item passes through
unchanged (the same object); while the sink's valve is shut, consecutive ``TextDelta``s
(and consecutive ``ReasoningDelta``s without a signature) are merged into one pending
delta, which the sink receives the moment it has room. Other events are never merged and
keep their place. Merging keeps a list of the fragments and joins them once, when the
delta is handed over, so a run of n fragments costs O(n) characters.
"""

from __future__ import annotations

from collections import deque
from typing import Any, TypeVar

from rxllm.errors import ConfigError
from rxllm.events import ReasoningDelta, TextDelta
from rxllm.typing import Operator

from ._flow import gate
from ._flowstats import FlowStats

__all__ = ["DEFAULT_MAX_CHARS", "DEFAULT_MAX_PENDING", "coalesce_"]

_T = TypeVar("_T")

DEFAULT_MAX_CHARS = 65_536
"""The longest merged delta, in characters; a longer run starts a new delta."""

DEFAULT_MAX_PENDING = 256
"""Items (a merged run counts as one) held for a lagging sink before the source pauses."""


class _Run:
    """Consecutive deltas of one kind waiting to be handed over as one."""

    __slots__ = ("first", "kind", "parts", "size")

    def __init__(self, kind: type, first: Any) -> None:
        self.kind = kind
        self.first = first
        self.parts: list[str] | None = None
        self.size = len(first.text)

    def add(self, text: str) -> None:
        if self.parts is None:
            self.parts = [self.first.text]
        self.parts.append(text)
        self.size += len(text)

    def build(self) -> Any:
        if self.parts is None:
            return self.first  # a single delta goes out as itself, raw payload included
        text = "".join(self.parts)
        if self.kind is TextDelta:
            return TextDelta(text=text)
        return ReasoningDelta(text=text)


class _Merge:
    __slots__ = ("high", "items", "low_mark", "max_chars", "stats")

    def __init__(self, stats: FlowStats, max_chars: int, max_pending: int) -> None:
        self.stats = stats
        self.max_chars = max_chars
        self.high = max_pending
        self.low_mark = max_pending // 2
        self.items: deque[Any] = deque()

    def hold(self, item: Any) -> None:
        kind = type(item)
        if kind is TextDelta or (kind is ReasoningDelta and item.signature is None):
            items = self.items
            if items:
                last = items[-1]
                if (
                    type(last) is _Run
                    and last.kind is kind
                    and last.size + len(item.text) <= self.max_chars
                ):
                    last.add(item.text)
                    self.stats.merged += 1
                    return
            items.append(_Run(kind, item))
        else:
            self.items.append(item)

    def take(self) -> Any:
        entry = self.items.popleft()
        if type(entry) is _Run:
            return entry.build()
        return entry

    @property
    def pending(self) -> int:
        return len(self.items)

    @property
    def full(self) -> bool:
        return len(self.items) >= self.high

    @property
    def low(self) -> bool:
        return len(self.items) <= self.low_mark

    def clear(self) -> None:
        self.items.clear()


def coalesce_(
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_pending: int = DEFAULT_MAX_PENDING,
    stats: FlowStats | None = None,
) -> Operator[_T, _T]:
    """Implementation of ``rxllm.operators.coalesce`` (see there)."""
    if max_chars < 1:
        raise ConfigError("coalesce: max_chars must be at least 1")
    if max_pending < 1:
        raise ConfigError("coalesce: max_pending must be at least 1")
    return gate(lambda counters: _Merge(counters, max_chars, max_pending), stats)
