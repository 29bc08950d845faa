"""``latest`` and ``drop_oldest``: lossy previews, only when asked for.

Built on the demand gate (``._flow``). While the sink keeps up nothing is dropped. While
its valve is shut the gate keeps the newest ``limit`` droppable items (``latest`` is
``limit=1``), counting every item it discards; items the ``keep`` predicate protects (by
default ``Finished``) are never dropped and keep their place. Completion and errors are
never dropped either. The source keeps reading while the sink lags, except when
``max_kept`` protected items pile up: then it pauses, so even that buffer is bounded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from rxllm.errors import ConfigError
from rxllm.events import Finished
from rxllm.typing import Operator

from ._flow import gate
from ._flowstats import FlowStats

__all__ = ["DEFAULT_MAX_KEPT", "drop_oldest_", "is_terminal"]

_T = TypeVar("_T")

DEFAULT_MAX_KEPT = 1024
"""Protected items held for a lagging sink before the source pauses."""


def is_terminal(item: object) -> bool:
    """The default ``keep`` predicate: only ``Finished`` is protected."""
    return isinstance(item, Finished)


class _DropOldest:
    __slots__ = ("droppable", "items", "keep", "kept", "limit", "max_kept", "stats")

    def __init__(
        self, stats: FlowStats, limit: int, keep: Callable[[Any], bool], max_kept: int
    ) -> None:
        self.stats = stats
        self.limit = limit
        self.keep = keep
        self.max_kept = max_kept
        self.items: deque[tuple[bool, Any]] = deque()
        self.droppable = 0
        self.kept = 0

    def hold(self, item: Any) -> None:
        if self.keep(item):
            self.items.append((True, item))
            self.kept += 1
            return
        self.items.append((False, item))
        self.droppable += 1
        if self.droppable > self.limit:
            items = self.items
            for index, (protected, _) in enumerate(items):
                if not protected:
                    del items[index]
                    break
            self.droppable -= 1
            self.stats.dropped += 1

    def take(self) -> Any:
        protected, item = self.items.popleft()
        if protected:
            self.kept -= 1
        else:
            self.droppable -= 1
        return item

    @property
    def pending(self) -> int:
        return len(self.items)

    @property
    def full(self) -> bool:
        return self.kept >= self.max_kept

    @property
    def low(self) -> bool:
        return self.kept <= self.max_kept // 2

    def clear(self) -> None:
        self.items.clear()
        self.droppable = self.kept = 0


def drop_oldest_(
    limit: int,
    *,
    keep: Callable[[Any], bool] | None = None,
    max_kept: int = DEFAULT_MAX_KEPT,
    stats: FlowStats | None = None,
) -> Operator[_T, _T]:
    """Implementation of ``rxllm.operators.drop_oldest`` and ``latest`` (see there)."""
    if limit < 1:
        raise ConfigError("drop_oldest: limit must be at least 1")
    if max_kept < 1:
        raise ConfigError("drop_oldest: max_kept must be at least 1")
    predicate = is_terminal if keep is None else keep
    return gate(lambda counters: _DropOldest(counters, limit, predicate, max_kept), stats)
