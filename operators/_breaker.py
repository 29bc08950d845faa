"""``circuit_breaker`` and ``CircuitBreaker``: stop calling a provider that keeps failing.

States::

    closed --(N consecutive failures, or failure rate >= r over `window`)--> open
    open --(`open_for` seconds later, on the next call)--> half_open
    half_open --(a probe succeeds)--> closed
    half_open --(a probe fails)--> open

A call that fails to start and a stream interrupted after content are failures; a
completed stream is a success; a consumer that disposes (cancels) counts as neither, and so
does a ``BadRequest`` (the request was wrong, not the provider).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxllm.errors import BadRequest, CircuitOpen, ConfigError
from rxllm.typing import Operator

from ._resil import Lean, subscribe_lean

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "Permit",
    "StateListener",
    "circuit_breaker_",
    "counts_as_failure",
]

_T = TypeVar("_T")
_log = logging.getLogger("rxllm")

BreakerState: TypeAlias = Literal["closed", "open", "half_open"]
"""A circuit breaker's state."""

StateListener: TypeAlias = Callable[["CircuitBreaker", BreakerState, BreakerState], object]
"""Called with ``(breaker, old_state, new_state)`` after each state change."""

_BUCKETS = 10  # the failure-rate window is kept as this many time buckets: O(1) memory


def counts_as_failure(error: Exception) -> bool:
    """The default ``is_failure`` of a breaker: every error except ``BadRequest``."""
    return not isinstance(error, BadRequest)


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to make one call, from ``CircuitBreaker.try_acquire``.

    ``probe`` is true for a half-open probe; ``generation`` ties the permit to the breaker
    state it was issued in, so a slow call from before a trip cannot close the breaker.
    """

    probe: bool
    generation: int


class CircuitBreaker:
    """A circuit breaker: closed, open, or half-open with a limited number of probes.

    Args:
        name: what the breaker protects (a provider name); used in ``CircuitOpen``.
        failure_threshold: open after this many consecutive failures (``None``: never on
            a count).
        failure_rate: open when the share of failed calls in the last ``window`` seconds
            reaches this fraction, once at least ``min_calls`` calls were made there
            (``None``: never on a rate).
        window: the sliding window of ``failure_rate``, in seconds.
        min_calls: the fewest calls in the window before the rate can trip the breaker.
        open_for: how long an open breaker refuses calls before it lets probes through.
        half_open_probes: how many calls may probe a half-open breaker at once.
        clock: seconds as a float (only differences matter); ``time.monotonic`` by
            default, a scheduler's clock in tests (``rxllm.operators._resil.clock_for``).
        is_failure: which errors count as failures (default: all but ``BadRequest``).

    A breaker is thread-safe and meant to be shared by every caller of one provider.
    Listeners (``add_listener``) and the ``on_change`` callback of each method are called
    after a state change, outside the lock; one that raises is logged, never propagated.
    """

    def __init__(
        self,
        name: str = "",
        *,
        failure_threshold: int | None = 5,
        failure_rate: float | None = None,
        window: float = 60.0,
        min_calls: int = 10,
        open_for: float = 30.0,
        half_open_probes: int = 1,
        clock: Callable[[], float] | None = None,
        is_failure: Callable[[Exception], bool] | None = None,
    ) -> None:
        if failure_threshold is None and failure_rate is None:
            raise ConfigError("a breaker needs failure_threshold, failure_rate or both")
        if failure_threshold is not None and failure_threshold < 1:
            raise ConfigError("failure_threshold must be at least 1")
        if failure_rate is not None and not 0.0 < failure_rate <= 1.0:
            raise ConfigError("failure_rate is a fraction in (0, 1]")
        if window <= 0 or open_for < 0:
            raise ConfigError("window must be positive and open_for not negative")
        if min_calls < 1 or half_open_probes < 1:
            raise ConfigError("min_calls and half_open_probes must be at least 1")
        self.name = name
        self.failure_threshold = failure_threshold
        self.failure_rate = failure_rate
        self.window = float(window)
        self.min_calls = min_calls
        self.open_for = float(open_for)
        self.half_open_probes = half_open_probes
        self.is_failure: Callable[[Exception], bool] = is_failure or counts_as_failure
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._listeners: list[StateListener] = []
        self._state: BreakerState = "closed"
        self._generation = 0
        self._consecutive = 0
        self._opened_at = 0.0
        self._probes = 0
        self._width = self.window / _BUCKETS
        self._buckets = [[-1, 0, 0] for _ in range(_BUCKETS)]  # [epoch, calls, failures]

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r} {self._state}>"

    # --- reading -------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker whose ``open_for`` ran out reads half-open)."""
        with self._lock:
            if self._state == "open" and self._clock() >= self._opened_at + self.open_for:
                return "half_open"
            return self._state

    def available(self) -> bool:
        """Tell whether ``try_acquire`` would give a permit now (without taking one)."""
        with self._lock:
            if self._state == "closed":
                return True
            if self._state == "open":
                return self._clock() >= self._opened_at + self.open_for
            return self._probes < self.half_open_probes

    def retry_after(self) -> float | None:
        """Seconds until an open breaker lets a probe through (``None`` unless open)."""
        with self._lock:
            if self._state != "open":
                return None
            return max(0.0, self._opened_at + self.open_for - self._clock())

    def open_error(self) -> CircuitOpen:
        """The ``CircuitOpen`` error for a call this breaker refused."""
        wait = self.retry_after()
        error = CircuitOpen(
            f"circuit breaker {self.name or '(unnamed)'} is open: no request was made",
            provider=self.name or None,
            until=None if wait is None else self._opened_at + self.open_for,
        )
        error.retry_after = wait
        return error

    # --- calls ---------------------------------------------------------------------------

    def try_acquire(self, on_change: StateListener | None = None) -> Permit | None:
        """Leave to make one call, or ``None`` when the breaker refuses it."""
        change: tuple[BreakerState, BreakerState] | None = None
        with self._lock:
            if self._state == "open":
                if self._clock() < self._opened_at + self.open_for:
                    return None
                change = self._move("half_open")
            if self._state == "closed":
                permit: Permit | None = Permit(False, self._generation)
            elif self._probes < self.half_open_probes:
                self._probes += 1
                permit = Permit(True, self._generation)
            else:
                permit = None
        self._notify(change, on_change)
        return permit

    def record_success(self, permit: Permit, on_change: StateListener | None = None) -> None:
        """The call made under ``permit`` succeeded (its stream completed)."""
        change = None
        with self._lock:
            if self._state == "closed":
                self._consecutive = 0
                self._add(ok=True)
            elif self._state == "half_open" and permit.probe and self._current(permit):
                change = self._move("closed")
        self._notify(change, on_change)

    def record_failure(self, permit: Permit, on_change: StateListener | None = None) -> None:
        """The call made under ``permit`` failed (to start, or mid-stream)."""
        change = None
        with self._lock:
            if self._state == "closed":
                self._consecutive += 1
                self._add(ok=False)
                if self._tripped():
                    change = self._move("open")
            elif self._state == "half_open" and permit.probe and self._current(permit):
                change = self._move("open")
        self._notify(change, on_change)

    def record_error(
        self, permit: Permit, error: Exception, on_change: StateListener | None = None
    ) -> None:
        """Record ``error``: a failure if ``is_failure(error)``, else like ``release``."""
        if self.is_failure(error):
            self.record_failure(permit, on_change)
        else:
            self.release(permit)

    def release(self, permit: Permit) -> None:
        """The call under ``permit`` ended with no verdict (cancelled): free its probe slot."""
        with self._lock:
            if permit.probe and self._state == "half_open" and self._current(permit):
                self._probes -= 1

    def reset(self) -> None:
        """Forget everything: closed, no failures counted."""
        with self._lock:
            change = self._move("closed") if self._state != "closed" else None
            self._consecutive = 0
            for bucket in self._buckets:
                bucket[:] = [-1, 0, 0]
        self._notify(change, None)

    # --- listeners -----------------------------------------------------------------------

    def add_listener(self, listener: StateListener) -> None:
        """Call ``listener(breaker, old, new)`` after every state change."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: StateListener) -> None:
        """Stop calling ``listener``."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    # --- internals (called with the lock held, except _notify) ---------------------------

    def _current(self, permit: Permit) -> bool:
        return permit.generation == self._generation

    def _move(self, new: BreakerState) -> tuple[BreakerState, BreakerState]:
        old, self._state = self._state, new
        self._generation += 1
        self._probes = 0
        if new == "open":
            self._opened_at = self._clock()
        elif new == "closed":
            self._consecutive = 0
            for bucket in self._buckets:
                bucket[:] = [-1, 0, 0]
        return old, new

    def _add(self, *, ok: bool) -> None:
        if self.failure_rate is None:
            return
        epoch = int(self._clock() // self._width)
        bucket = self._buckets[epoch % _BUCKETS]
        if bucket[0] != epoch:
            bucket[:] = [epoch, 0, 0]
        bucket[1] += 1
        if not ok:
            bucket[2] += 1

    def _tripped(self) -> bool:
        if self.failure_threshold is not None and self._consecutive >= self.failure_threshold:
            return True
        if self.failure_rate is None:
            return False
        epoch = int(self._clock() // self._width)
        calls = failures = 0
        for start, n, bad in self._buckets:
            if 0 <= epoch - start < _BUCKETS:
                calls += n
                failures += bad
        return calls >= self.min_calls and failures >= self.failure_rate * calls

    def _notify(
        self, change: tuple[BreakerState, BreakerState] | None, on_change: StateListener | None
    ) -> None:
        if change is None:
            return
        old, new = change
        with self._lock:
            listeners = list(self._listeners)
        if on_change is not None:
            listeners.append(on_change)
        for listener in listeners:
            try:
                listener(self, old, new)
            except Exception:  # noqa: BLE001 - a listener must never break a stream
                _log.exception("circuit breaker listener raised (breaker %s)", self.name)


def circuit_breaker_(breaker: CircuitBreaker) -> Operator[_T, _T]:
    """Implementation of ``rxllm.operators.circuit_breaker`` (see there)."""
    if not isinstance(breaker, CircuitBreaker):
        raise TypeError("circuit_breaker() takes a CircuitBreaker")

    def operator(source: Observable[_T]) -> Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            permit = breaker.try_acquire()
            if permit is None:
                observer.on_error(breaker.open_error())  # no request is made
                return Disposable()
            ended = False

            def on_error(error: Exception) -> None:
                nonlocal ended
                if not ended:
                    ended = True
                    breaker.record_error(permit, error)
                    observer.on_error(error)

            def on_completed() -> None:
                nonlocal ended
                if not ended:
                    ended = True
                    breaker.record_success(permit)
                    observer.on_completed()

            # Per event the upstream calls the downstream's on_next itself: nothing between.
            subscription = subscribe_lean(
                source, observer.on_next, on_error, on_completed, scheduler
            )

            def dispose() -> None:
                nonlocal ended
                if not ended:
                    ended = True
                    breaker.release(permit)  # the consumer cancelled: not the provider's fault
                subscription.dispose()

            return Disposable(dispose)

        return Lean(subscribe)

    return operator
