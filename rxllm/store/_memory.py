"""``MemoryStore``: the default, in-process ``Store``.

Per stream: a deque of ``Stamped`` events with a parallel deque of append times, and the
sequence number of the next event. Event ``n`` (from 1) has the id ``f"{n:016d}"``, so ids
compare as strings in append order; ``"0000000000000000"`` means "before the first event".
The window is trimmed by count on append and by age on every call, and ended streams are
forgotten ``max_age`` seconds after their end (checked lazily on every call, oldest first,
so the cost is proportional to what expires). The store never suspends.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from itertools import islice

from rxllm.errors import ConfigError, ReplayWindowExceeded, UnknownId
from rxllm.events import Event

from ._base import DEFAULT_PAGE, Page, Stamped, StreamInfo

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_EVENTS",
    "DEFAULT_MAX_STREAMS",
    "ID_WIDTH",
    "MemoryStore",
]

DEFAULT_MAX_EVENTS = 10_000
"""Events kept per stream for replay."""

DEFAULT_MAX_AGE = 300.0
"""Seconds an event stays replayable, and an ended stream stays known."""

DEFAULT_MAX_STREAMS = 10_000
"""Streams held at once, running and ended."""

ID_WIDTH = 16
"""Digits in an event id."""


class _Log:
    __slots__ = ("ended", "ended_at", "error", "items", "next_seq", "times")

    def __init__(self) -> None:
        self.items: deque[Stamped] = deque()
        self.times: deque[float] = deque()
        self.next_seq = 1
        self.ended = False
        self.ended_at = 0.0
        self.error: BaseException | None = None


class MemoryStore:
    """An in-process store with a bounded replay window per stream (see ``Store``).

    Args:
        max_events: events kept per stream; older ones are trimmed.
        max_age: seconds an event stays replayable; an ended stream is forgotten this long
            after its end.
        max_streams: streams held at once; when full, ``create`` forgets the ended stream
            that ended first, and fails with ``ConfigError`` if every stream is running.
        clock: a monotonic clock in seconds (tests pass a fake one).
    """

    def __init__(
        self,
        *,
        max_events: int = DEFAULT_MAX_EVENTS,
        max_age: float = DEFAULT_MAX_AGE,
        max_streams: int = DEFAULT_MAX_STREAMS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_events < 1:
            raise ConfigError("MemoryStore: max_events must be at least 1")
        if not max_age > 0:
            raise ConfigError("MemoryStore: max_age must be positive")
        if max_streams < 1:
            raise ConfigError("MemoryStore: max_streams must be at least 1")
        self.max_events = max_events
        self.max_age = float(max_age)
        self.max_streams = max_streams
        self._clock = clock
        self._logs: dict[str, _Log] = {}
        self._ended: OrderedDict[str, float] = OrderedDict()  # stream id -> end time, in order

    def __repr__(self) -> str:
        return (
            f"MemoryStore(max_events={self.max_events}, max_age={self.max_age}, "
            f"streams={len(self._logs)})"
        )

    def __len__(self) -> int:
        """How many streams the store holds (running and ended)."""
        self._expire(self._clock())
        return len(self._logs)

    async def create(self, stream_id: str) -> None:
        """Begin an empty stream; ``ConfigError`` if ``stream_id`` is already known."""
        self._expire(self._clock())
        if stream_id in self._logs:
            raise ConfigError(f"stream {stream_id!r} already exists")
        if len(self._logs) >= self.max_streams:
            if not self._ended:
                raise ConfigError(
                    f"the store holds {self.max_streams} running streams (max_streams)"
                )
            oldest, _ = self._ended.popitem(last=False)
            del self._logs[oldest]
        self._logs[stream_id] = _Log()

    async def append(self, stream_id: str, events: Sequence[Event]) -> Sequence[Stamped]:
        """Give ``events`` ids, keep them in the window (trimming it) and return them."""
        now = self._clock()
        log = self._log(stream_id, now)
        if log.ended:
            raise ConfigError(f"stream {stream_id!r} has ended: no more events")
        seq = log.next_seq
        stamped = [Stamped(f"{n:0{ID_WIDTH}d}", ev) for n, ev in enumerate(events, seq)]
        log.next_seq = seq + len(stamped)
        items, times = log.items, log.times
        items.extend(stamped)
        times.extend([now] * len(stamped))
        excess = len(items) - self.max_events
        if excess > 0:
            if excess >= len(items) // 2:
                # A large batch: rebuild rather than pop one by one.
                log.items = deque(islice(items, excess, None))
                log.times = deque(islice(times, excess, None))
            else:
                for _ in range(excess):
                    items.popleft()
                    times.popleft()
        return stamped

    async def close(self, stream_id: str, error: BaseException | None = None) -> None:
        """Record that the stream ended (with ``error``, or completed)."""
        now = self._clock()
        log = self._log(stream_id, now)
        if log.ended:
            return
        log.ended, log.ended_at, log.error = True, now, error
        self._ended[stream_id] = now

    async def read(
        self, stream_id: str, *, after: str | None = None, limit: int = DEFAULT_PAGE
    ) -> Page:
        """Events after ``after`` (``None``: from the oldest kept), at most ``limit``."""
        if limit < 1:
            raise ConfigError("read: limit must be at least 1")
        log = self._log(stream_id, self._clock())
        items = log.items
        last = log.next_seq - 1
        first = log.next_seq - len(items)  # the oldest kept event's number
        if after is None:
            start = 0
        else:
            n = self._parse(stream_id, after)
            if n > last:
                raise UnknownId(
                    f"stream {stream_id!r} has no event {after!r} (its newest is {last})",
                    stream_id=stream_id,
                    event_id=after,
                )
            if n < first - 1:
                oldest = items[0].id if items else None
                raise ReplayWindowExceeded(
                    f"event {after!r} of stream {stream_id!r} left the replay window "
                    f"(oldest kept: {oldest})",
                    requested=after,
                    oldest=oldest,
                )
            start = n - (first - 1)
        page = list(islice(items, start, start + limit))
        ended = log.ended and start + len(page) == len(items)
        return Page(items=page, ended=ended, error=log.error if ended else None)

    async def info(self, stream_id: str) -> StreamInfo:
        """The stream's window bounds and end; ``UnknownId`` if the stream is unknown."""
        log = self._log(stream_id, self._clock())
        last = log.next_seq - 1
        return StreamInfo(
            stream_id=stream_id,
            first_id=log.items[0].id if log.items else None,
            last_id=f"{last:0{ID_WIDTH}d}" if last else None,
            ended=log.ended,
            error=log.error,
        )

    async def forget(self, stream_id: str) -> None:
        """Drop the stream and its events now (unknown streams are ignored)."""
        self._logs.pop(stream_id, None)
        self._ended.pop(stream_id, None)

    # --- internals ------------------------------------------------------------------------

    def _log(self, stream_id: str, now: float) -> _Log:
        self._expire(now)
        log = self._logs.get(stream_id)
        if log is None:
            raise UnknownId(f"unknown stream {stream_id!r}", stream_id=stream_id)
        self._trim_age(log, now)
        return log

    def _trim_age(self, log: _Log, now: float) -> None:
        times = log.times
        cutoff = now - self.max_age
        if times and times[0] < cutoff:
            items = log.items
            while times and times[0] < cutoff:
                times.popleft()
                items.popleft()

    def _expire(self, now: float) -> None:
        ended = self._ended
        cutoff = now - self.max_age
        while ended:
            stream_id, at = next(iter(ended.items()))
            if at >= cutoff:
                break
            del ended[stream_id]
            del self._logs[stream_id]

    @staticmethod
    def _parse(stream_id: str, event_id: str) -> int:
        if len(event_id) != ID_WIDTH or not (event_id.isascii() and event_id.isdigit()):
            raise UnknownId(
                f"{event_id!r} is not an event id of stream {stream_id!r}",
                stream_id=stream_id,
                event_id=event_id,
            )
        return int(event_id)
