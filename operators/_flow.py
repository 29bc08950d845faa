"""The demand gate shared by ``coalesce``, ``latest`` and ``drop_oldest``.

An operator built on the gate sits between a sink's demand and its source:

- At subscription it finds the sink's valve (``rxllm._valve.current_valve()``: the one
  ``to_aiter`` or the SSE gateway subscribes inside) and watches it.
- It subscribes its own source inside ``valve_scope`` of a valve of its own, so the source
  keeps reading while the sink is shut and stops only when the gate's own bounded buffer
  is full.
- While the sink's valve is open and nothing is pending, each item passes straight
  through: one attribute check per item, no copy, no scheduling.
- While the sink's valve is shut (the consumer lags), items go to a *policy*: ``coalesce``
  merges consecutive deltas, ``latest``/``drop_oldest`` keep the newest ones.
- The moment the sink's valve opens again (``Valve.watch``), the gate hands the pending
  items over, oldest first, until the sink shuts again or nothing is left; then it reopens
  its own valve so the source reads again.
- Completion and errors wait until every pending item has been handed over: the terminal
  notification is never dropped and never overtakes an item.

Without a sink valve (a plain ``subscribe``, or the Hub, which hides valves) the gate is a
pass-through. Everything runs on the thread that delivers the notifications (the event
loop, for rxllm's sources).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable

from rxllm._valve import Valve, current_valve, valve_scope
from rxllm.typing import Operator

from ._flowstats import FlowStats

__all__ = ["Policy", "gate"]

_T = TypeVar("_T")


class Policy(Protocol[_T]):
    """How a gate holds items while the sink lags (one instance per subscription)."""

    def hold(self, item: _T) -> None:
        """Keep ``item`` (merging or dropping as the policy says, counting into stats)."""

    def take(self) -> _T:
        """Remove and return the oldest pending item (only called when ``pending``)."""

    @property
    def pending(self) -> int:
        """How many items are waiting (a merged run counts as one)."""

    @property
    def full(self) -> bool:
        """Whether the gate should pause its upstream (the policy's bound is reached)."""

    @property
    def low(self) -> bool:
        """Whether the gate may let its upstream read again (drained to the low-water mark)."""

    def clear(self) -> None:
        """Forget every pending item (the subscription was disposed)."""


class _Gate(Generic[_T]):
    __slots__ = (
        "again",
        "disposed",
        "flushing",
        "observer",
        "own",
        "policy",
        "sink",
        "stats",
        "terminal",
    )

    def __init__(
        self,
        observer: abc.ObserverBase[_T],
        sink: Valve,
        policy: Policy[_T],
        stats: FlowStats,
    ) -> None:
        self.observer = observer
        self.sink = sink
        self.policy = policy
        self.stats = stats
        self.own = Valve()
        self.flushing = False
        self.again = False
        self.disposed = False
        # None while running; a 1-tuple holding the error (or None for completion) once
        # the upstream has ended and the end waits behind pending items.
        self.terminal: tuple[Exception | None] | None = None

    def on_next(self, item: _T) -> None:
        stats = self.stats
        stats.received += 1
        policy = self.policy
        if self.sink.is_open and not policy.pending:
            stats.emitted += 1
            self.observer.on_next(item)
            return
        policy.hold(item)
        if policy.full and self.own.is_open:
            stats.pauses += 1
            self.own.shut()
        if self.sink.is_open:
            self.flush()

    def on_error(self, error: Exception) -> None:
        self._end((error,))

    def on_completed(self) -> None:
        self._end((None,))

    def _end(self, terminal: tuple[Exception | None]) -> None:
        if self.terminal is not None or self.disposed:
            return
        self.terminal = terminal
        if self.policy.pending:
            self.flush()
        else:
            self._finish()

    def _finish(self) -> None:
        terminal = self.terminal
        assert terminal is not None
        error = terminal[0]
        if error is None:
            self.observer.on_completed()
        else:
            self.observer.on_error(error)

    def on_sink_change(self) -> None:
        if self.sink.is_open and (self.policy.pending or self.terminal is not None):
            self.flush()

    def flush(self) -> None:
        """Hand pending items to the sink while it is open; reopen the source's valve."""
        if self.flushing:
            self.again = True  # a nested notification: the outer loop goes round again
            return
        self.flushing = True
        try:
            policy, sink, own = self.policy, self.sink, self.own
            while not self.disposed:
                self.again = False
                while policy.pending and sink.is_open and not self.disposed:
                    item = policy.take()
                    self.stats.emitted += 1
                    self.observer.on_next(item)
                if not own.is_open and policy.low:
                    own.open()  # an upstream gate may hand items over right now
                if not self.again:
                    break
            if not self.disposed and not policy.pending and self.terminal is not None:
                self.disposed = True  # nothing more may pass after the end
                self._finish()
        finally:
            self.flushing = False

    def dispose(self) -> None:
        self.disposed = True
        self.policy.clear()


def gate(
    make_policy: Callable[[FlowStats], Policy[_T]], stats: FlowStats | None
) -> Operator[_T, _T]:
    """Build an operator that holds items in ``make_policy(stats)`` while the sink lags."""

    def operator(source: Observable[_T]) -> Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            counters = stats if stats is not None else FlowStats()
            sink = current_valve()
            if sink is None:
                # No demand-aware sink: a pass-through that still counts.
                def on_next(item: _T) -> None:
                    counters.received += 1
                    counters.emitted += 1
                    observer.on_next(item)

                return source.subscribe(
                    on_next, observer.on_error, observer.on_completed, scheduler=scheduler
                )
            state = _Gate(observer, sink, make_policy(counters), counters)
            unwatch = sink.watch(state.on_sink_change)
            with valve_scope(state.own):
                upstream = source.subscribe(
                    state.on_next, state.on_error, state.on_completed, scheduler=scheduler
                )
            return CompositeDisposable(upstream, Disposable(unwatch), Disposable(state.dispose))

        return reactivex.create(subscribe)

    return operator
