"""The token-fair merge behind ``rxllm.roundtable``: round-robin hand-over while the sink lags.

Several panelists stream at once into one sink. Each item is pushed into a *lane* (one per
panelist in parallel rounds). The merge sits between the sink's demand and the panelists'
sources, as the demand gate of ``coalesce`` does (``operators/_flow.py``):

- At subscription the table finds the sink's valve (``rxllm._valve.current_valve()``: the
  one ``to_aiter`` or the SSE gateway subscribes inside) and the merge watches it.
- While the sink's valve is open and nothing is pending, every item passes straight
  through, in arrival order: no copy, no scheduling.
- While it is shut (the consumer lags), items wait in their lane; consecutive text (and
  signature-less reasoning) deltas of one lane are merged into one pending item, so a
  lane's backlog is a handful of entries whatever its length.
- The moment the sink's valve opens, pending entries are handed over **round-robin**
  across lanes, one entry per lane per cycle, until the sink shuts again. A fast lane's
  whole backlog costs one entry per cycle, so a slow lane's token waits at most one cycle.
- Each lane's source is subscribed inside ``valve_scope`` of the lane's own valve, which
  shuts only when that lane holds ``max_pending`` entries: a fast panelist pauses its own
  socket, never its neighbour's. It reopens once drained to half.
- *Barriers* (the end of a round, the end of the table) wait until every item pushed
  before them has been handed over; items pushed after them wait behind them.
- Completion and errors wait behind every pending item and barrier.

Everything runs on the thread that delivers the notifications (the event loop, for rxllm's
sources).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import Any, Generic, Protocol, TypeVar

from reactivex import abc

from ._valve import Valve

__all__ = ["FairMerge", "Merge", "PassThrough"]

_T = TypeVar("_T")
_T_contra = TypeVar("_T_contra", contravariant=True)


class Merge(Protocol[_T_contra]):
    """What the roundtable pushes its events into."""

    def scope_valve(self, lane: Hashable) -> Valve | None:
        """The valve to subscribe ``lane``'s source inside."""

    def push(self, lane: Hashable, item: _T_contra) -> None:
        """Deliver ``item`` of ``lane`` (now, or in its fair turn)."""

    def barrier(self, item: _T_contra) -> None:
        """Deliver ``item`` once everything pushed before it has been delivered."""

    def end(self, error: Exception | None) -> None:
        """Complete (or fail) once everything pending has been delivered."""

    def dispose(self) -> None:
        """Forget everything pending; deliver nothing more."""


class PassThrough(Generic[_T]):
    """No demand-aware sink (or fairness off): every item passes at once, in arrival order.

    Lanes are subscribed inside ``valve``, the sink's own valve (or none), so a sink that
    lags pauses every panelist alike.
    """

    __slots__ = ("disposed", "observer", "valve")

    def __init__(self, observer: abc.ObserverBase[_T], valve: Valve | None) -> None:
        self.observer = observer
        self.valve = valve
        self.disposed = False

    def scope_valve(self, lane: Hashable) -> Valve | None:
        """The sink's valve, whatever the lane."""
        return self.valve

    def push(self, lane: Hashable, item: _T) -> None:
        """Deliver ``item`` now."""
        if not self.disposed:
            self.observer.on_next(item)

    def barrier(self, item: _T) -> None:
        """Deliver ``item`` now (nothing is ever pending)."""
        if not self.disposed:
            self.observer.on_next(item)

    def end(self, error: Exception | None) -> None:
        """Complete or fail now."""
        if self.disposed:
            return
        self.disposed = True
        if error is None:
            self.observer.on_completed()
        else:
            self.observer.on_error(error)

    def dispose(self) -> None:
        """Deliver nothing more."""
        self.disposed = True


class _Run:
    """Consecutive mergeable items of one lane waiting to be handed over as one."""

    __slots__ = ("first", "key", "parts", "size")

    def __init__(self, key: Hashable, first: Any, text: str) -> None:
        self.key = key
        self.first = first
        self.parts: list[str] | None = None
        self.size = len(text)

    def add(self, first_text: str, text: str) -> None:
        if self.parts is None:
            self.parts = [first_text]
        self.parts.append(text)
        self.size += len(text)


class _Segment:
    """Everything pushed between two barriers: per-lane queues and a round-robin order."""

    __slots__ = ("barrier", "queues", "ready")

    def __init__(self) -> None:
        self.queues: dict[Hashable, deque[Any]] = {}
        self.ready: deque[Hashable] = deque()  # lanes holding entries, in hand-over order
        self.barrier: tuple[Any] | None = None


class FairMerge(Generic[_T]):
    """Round-robin, coalescing hand-over of lanes to a sink that signals demand by a valve.

    Args:
        observer: the sink.
        sink: the sink's valve (watched: its opening triggers the hand-over).
        max_pending: entries a lane may hold before its own valve shuts.
        max_chars: the longest merged text; a longer run starts a new entry.
        run_key: the merge key of an item (items with equal keys merge), ``None`` if the
            item never merges.
        text_of: the text of a mergeable item.
        join: builds the merged item from a run's first item and the joined text.
    """

    __slots__ = (
        "again",
        "counts",
        "disposed",
        "flushing",
        "high",
        "join",
        "low",
        "max_chars",
        "merged",
        "observer",
        "pending",
        "run_key",
        "segments",
        "sink",
        "terminal",
        "text_of",
        "unwatch",
        "valves",
    )

    def __init__(
        self,
        observer: abc.ObserverBase[_T],
        sink: Valve,
        *,
        max_pending: int,
        max_chars: int,
        run_key: Callable[[_T], Hashable | None],
        text_of: Callable[[_T], str],
        join: Callable[[_T, str], _T],
    ) -> None:
        self.observer = observer
        self.sink = sink
        self.high = max_pending
        self.low = max_pending // 2
        self.max_chars = max_chars
        self.run_key = run_key
        self.text_of = text_of
        self.join = join
        self.segments: deque[_Segment] = deque([_Segment()])
        self.valves: dict[Hashable, Valve] = {}
        self.counts: dict[Hashable, int] = {}
        self.pending = 0  # entries and barriers not handed over yet
        self.merged = 0
        """How many items were merged into an earlier one (for tests and metrics)."""
        self.flushing = False
        self.again = False
        self.disposed = False
        self.terminal: tuple[Exception | None] | None = None
        self.unwatch = sink.watch(self._on_sink_change)

    # --- the roundtable's side ------------------------------------------------------------

    def scope_valve(self, lane: Hashable) -> Valve:
        """The lane's own valve: shut only while the lane holds ``max_pending`` entries."""
        valve = self.valves.get(lane)
        if valve is None:
            valve = self.valves[lane] = Valve()
        return valve

    def push(self, lane: Hashable, item: _T) -> None:
        """Deliver ``item`` now if the sink keeps up, else queue it in ``lane``."""
        if self.disposed or self.terminal is not None:
            return
        if self.pending == 0 and self.sink.is_open:
            self.observer.on_next(item)
            return
        segment = self.segments[-1]
        queue = segment.queues.get(lane)
        if queue is None:
            queue = segment.queues[lane] = deque()
        key = self.run_key(item)
        if key is None:
            entry: Any = item
        else:
            text = self.text_of(item)
            if queue:
                last = queue[-1]
                if (
                    type(last) is _Run
                    and last.key == key
                    and last.size + len(text) <= self.max_chars
                ):
                    last.add(self.text_of(last.first), text)
                    self.merged += 1
                    return
            entry = _Run(key, item, text)
        if not queue:
            segment.ready.append(lane)
        queue.append(entry)
        self.pending += 1
        count = self.counts[lane] = self.counts.get(lane, 0) + 1
        if count >= self.high:
            valve = self.valves.get(lane)
            if valve is not None and valve.is_open:
                valve.shut()
        if self.sink.is_open:
            self._flush()

    def barrier(self, item: _T) -> None:
        """Deliver ``item`` after everything pushed so far, before anything pushed later."""
        if self.disposed or self.terminal is not None:
            return
        if self.pending == 0 and self.sink.is_open:
            self.observer.on_next(item)
            return
        self.segments[-1].barrier = (item,)
        self.segments.append(_Segment())
        self.pending += 1
        if self.sink.is_open:
            self._flush()

    def end(self, error: Exception | None) -> None:
        """Complete (``None``) or fail once every pending item has been handed over."""
        if self.disposed or self.terminal is not None:
            return
        self.terminal = (error,)
        if self.pending == 0:
            self._finish()
        elif self.sink.is_open:
            self._flush()

    def dispose(self) -> None:
        """Stop watching the sink and forget everything pending."""
        self.disposed = True
        self.unwatch()
        self.segments.clear()
        self.pending = 0
        for valve in self.valves.values():
            valve.open()  # a source still waiting on it must not hang

    # --- the sink's side ------------------------------------------------------------------

    def _on_sink_change(self) -> None:
        if self.sink.is_open and (self.pending or self.terminal is not None):
            self._flush()

    def _flush(self) -> None:
        """Hand entries over, one per lane per cycle, while the sink is open."""
        if self.flushing:
            self.again = True  # a nested notification: the outer loop goes round again
            return
        self.flushing = True
        try:
            sink, segments = self.sink, self.segments
            while not self.disposed:
                self.again = False
                while self.pending and sink.is_open and not self.disposed:
                    segment = segments[0]
                    if segment.ready:
                        lane = segment.ready.popleft()
                        queue = segment.queues[lane]
                        entry = queue.popleft()
                        if queue:
                            segment.ready.append(lane)  # back of the cycle
                        else:
                            del segment.queues[lane]
                        self.pending -= 1
                        if type(entry) is _Run:
                            first = entry.first
                            parts = entry.parts
                            entry = first if parts is None else self.join(first, "".join(parts))
                        self.observer.on_next(entry)
                        self._release(lane)
                    elif segment.barrier is not None:
                        segments.popleft()
                        if not segments:
                            segments.append(_Segment())
                        self.pending -= 1
                        self.observer.on_next(segment.barrier[0])
                    else:  # pragma: no cover - pending entries are always reachable
                        break
                if not self.again:
                    break
            if not self.disposed and self.pending == 0 and self.terminal is not None:
                self._finish()
        finally:
            self.flushing = False

    def _release(self, lane: Hashable) -> None:
        count = self.counts[lane] = self.counts[lane] - 1
        if count <= self.low:
            valve = self.valves.get(lane)
            if valve is not None and not valve.is_open:
                valve.open()  # a gate upstream may push right now; it queues behind

    def _finish(self) -> None:
        terminal = self.terminal
        assert terminal is not None
        self.disposed = True
        self.unwatch()
        error = terminal[0]
        if error is None:
            self.observer.on_completed()
        else:
            self.observer.on_error(error)
