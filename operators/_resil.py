"""What the resilience operators (and ``rxllm.chain``) share.

* the default classification of errors (DESIGN.md, "The first-token rule"): which errors
  fall over to another source (:func:`should_fall_over`), which are worth sending again
  (:func:`is_retryable`) and which may never be recovered (:func:`recoverable`);
* the backoff formula (:func:`backoff`);
* a cheap clock that agrees with a scheduler's relative timers (:func:`clock_for`);
* :class:`Slot`, the current inner subscription of an operator that switches sources;
* :func:`partial_response`, the ``Response`` folded from the events that passed;
* :class:`Lean` and :func:`subscribe_lean`: how stacked operators hand events to each other
  with one plain function call per event.

Nothing here is on the per-event path except what the operators inline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Generic, TypeAlias, TypeVar, cast

from reactivex import Observable, abc
from reactivex.disposable import Disposable
from reactivex.scheduler import VirtualTimeScheduler

from rxllm.errors import (
    AuthenticationError,
    BadRequest,
    CircuitOpen,
    ConfigError,
    IncompleteStream,
    ProviderError,
    ProviderExhausted,
    StreamInterrupted,
)
from rxllm.events import is_content
from rxllm.response import Accumulator, Response

__all__ = [
    "ErrorFilter",
    "HoldBack",
    "Lean",
    "Predicate",
    "Slot",
    "as_predicate",
    "backoff",
    "check_retry_settings",
    "clock_for",
    "has_content",
    "is_retryable",
    "partial_response",
    "recoverable",
    "should_fall_over",
    "subscribe_lean",
]

_T = TypeVar("_T")

Predicate: TypeAlias = Callable[[Exception], bool]
"""Decides whether an error is handled (retried, fallen over...)."""

ErrorFilter: TypeAlias = (
    type[BaseException] | tuple[type[BaseException], ...] | Callable[[Exception], bool]
)
"""What an ``on=`` argument accepts: an exception class, a tuple of them, or a predicate."""

# 4xx statuses that say "this request is wrong": the next provider would say the same.
_NOT_FALL_OVER_4XX = frozenset(range(400, 500)) - {401, 403, 408, 409, 429}


def should_fall_over(error: Exception) -> bool:
    """Tell whether ``error``, met before the first token, should hand the request to the
    next source (the default ``on`` of ``fallback``).

    Yes for connect errors and timeouts, 401/403, 408, 409, 429 (quota included), 5xx, 529,
    in-band provider errors, ``CircuitOpen``, ``ProviderExhausted``, ``FirstTokenTimeout``
    and an ``IncompleteStream`` without content. No for ``BadRequest`` (400, 404, 413, 422:
    every provider would refuse the same request) and for anything that is not a provider,
    transport or timeout failure (a bug is never hidden by a fallback).
    """
    if isinstance(error, BadRequest):
        return False
    if isinstance(error, AuthenticationError):
        return True
    if isinstance(error, ProviderError):
        status = error.status
        return status is None or status not in _NOT_FALL_OVER_4XX
    if isinstance(error, StreamInterrupted):
        return recoverable(error)
    return isinstance(error, CircuitOpen | ProviderExhausted | ConnectionError | TimeoutError)


def is_retryable(error: Exception) -> bool:
    """Tell whether sending the same request again may succeed (the default ``on`` of
    ``retry``; no silent catch-all).

    The error's own ``retryable`` attribute decides, except that an ``IncompleteStream``
    with nothing in it (the provider hung up before its first token) is retryable like a
    lost connection.
    """
    if isinstance(error, IncompleteStream):
        return recoverable(error)
    return getattr(error, "retryable", False) is True and recoverable(error)


def has_content(response: Response) -> bool:
    """Tell whether a (partial) ``Response`` holds anything the consumer may have seen."""
    return bool(
        response.text or response.reasoning or response.tool_calls or response.pending_tool_calls
    )


def recoverable(error: BaseException) -> bool:
    """Tell whether ``error`` may be retried or fallen over at all.

    A ``StreamInterrupted`` means content was already produced: never. The one exception is
    an ``IncompleteStream`` whose partial response is empty (the provider closed the
    stream before its first token), which is a stream-start failure like any other.
    """
    if isinstance(error, StreamInterrupted):
        return isinstance(error, IncompleteStream) and not has_content(error.partial)
    return True


def as_predicate(on: ErrorFilter | None, default: Predicate) -> Predicate:
    """Turn an ``on=`` argument into a predicate (``None`` gives ``default``)."""
    if on is None:
        return default
    if isinstance(on, type) and issubclass(on, BaseException):
        cls = on
        return lambda error: isinstance(error, cls)
    if isinstance(on, tuple):
        classes = on
        if not all(isinstance(c, type) and issubclass(c, BaseException) for c in classes):
            raise ConfigError("on= takes an exception class, a tuple of them, or a predicate")
        return lambda error: isinstance(error, classes)
    if callable(on):
        return cast(Predicate, on)
    raise ConfigError("on= takes an exception class, a tuple of them, or a predicate")


def check_retry_settings(
    *, attempts: int, wait_initial: float, wait_max: float, jitter: float, max_retry_after: float
) -> None:
    """Raise ``ConfigError`` for retry settings that make no sense."""
    if attempts < 1:
        raise ConfigError("attempts counts the first try and must be at least 1")
    if wait_initial < 0 or wait_max < 0 or max_retry_after < 0:
        raise ConfigError("waits must not be negative")
    if not 0.0 <= jitter <= 1.0:
        raise ConfigError("jitter is a fraction of the wait, from 0 to 1")


def backoff(
    retry: int,
    *,
    wait_initial: float,
    wait_max: float,
    jitter: float,
    random: Callable[[], float],
) -> float:
    """The wait before retry number ``retry`` (0 for the first retry).

    ``min(wait_max, wait_initial * 2**retry) * (1 - jitter * random())``: exponential,
    capped, then shortened by up to ``jitter`` (a fraction from 0 to 1) so that clients
    that failed together do not retry together. ``random()`` returns a float in [0, 1).
    """
    base = min(wait_max, wait_initial * 2.0 ** min(retry, 64))
    return base * (1.0 - jitter * random())


def clock_for(scheduler: abc.SchedulerBase) -> Callable[[], float]:
    """A clock in seconds that agrees with ``scheduler``'s relative timers.

    Virtual time for a ``VirtualTimeScheduler`` (``TestScheduler``), else
    ``time.monotonic`` (what asyncio's loop and the thread schedulers time with). Only
    differences of its readings mean anything.
    """
    if isinstance(scheduler, VirtualTimeScheduler):
        virtual = scheduler
        return lambda: virtual.to_seconds(virtual.clock)
    return time.monotonic


def partial_response(acc: Accumulator, texts: list[str]) -> Response:
    """The ``Response`` folded from ``acc`` plus the text fragments kept apart in ``texts``.

    The operators that must know what passed keep ``TextDelta.text`` in a plain list (one
    ``append`` per token) and feed every other event to an ``Accumulator``.
    """
    return replace(acc.response(), text="".join(texts))


class HoldBack:
    """The first-token rule's gate: lifecycle frames wait until the first content event.

    ``on_next`` forwards everything once ``live``; before that it holds ``Started`` /
    ``Usage`` and releases them, in order, just before the first content event. ``drop``
    forgets a failed attempt's frames (it leaves no trace); ``flush`` lets a stream that
    ends without any content deliver its frames.
    """

    __slots__ = ("_downstream", "_held", "live")

    def __init__(self, downstream: Callable[[Any], None]) -> None:
        self._downstream = downstream
        self._held: list[Any] = []
        self.live = False

    def on_next(self, event: Any) -> None:
        """Forward ``event``, or hold it if it is a lifecycle frame before content."""
        if self.live:
            self._downstream(event)
            return
        if is_content(event):
            self.live = True
            self.flush()
            self._downstream(event)
        else:
            self._held.append(event)

    def drop(self) -> None:
        """Forget the held frames of an attempt that failed before content."""
        self._held.clear()

    def flush(self) -> None:
        """Deliver the held frames now (first content, or completion without content)."""
        held, self._held = self._held, []
        for frame in held:
            self._downstream(frame)


class Slot:
    """The current inner subscription of an operator that may switch sources.

    A synchronous source can fail, and the operator switch to the next source, before
    ``subscribe`` returns the first source's disposable; ``subscribe`` here keeps only the
    newest subscription and disposes a stale one. After ``dispose`` every later
    subscription is disposed at once.
    """

    __slots__ = ("current", "disposed", "generation")

    def __init__(self) -> None:
        self.current: abc.DisposableBase | None = None
        self.disposed = False
        self.generation = 0

    def subscribe(self, make: Callable[[], abc.DisposableBase]) -> None:
        """Run ``make`` (which subscribes) and keep its disposable if still current."""
        self.generation += 1
        mine = self.generation
        old, self.current = self.current, None
        if old is not None:
            old.dispose()
        subscription = make()
        if self.disposed or self.generation != mine:
            subscription.dispose()
        else:
            self.current = subscription

    def clear(self) -> None:
        """Dispose the current subscription (the slot stays usable)."""
        old, self.current = self.current, None
        if old is not None:
            old.dispose()

    def dispose(self) -> None:
        """Dispose the current subscription and every later one."""
        self.disposed = True
        self.clear()


# --- lean stages ----------------------------------------------------------------------------
#
# reactivex's Observable.subscribe wraps every observer in an AutoDetachObserver: one more
# Python call and attribute check per event and per stage. A stack of five resilience
# operators would pay it five times. A ``Lean`` stage instead lets the next rxllm stage call
# its subscribe function directly with a plain observer made of the next stage's closures,
# so an event crosses each stage in one function call. Every Lean stage keeps the
# guarantees the wrapper gives: at most one terminal notification, nothing after it, and a
# disposable that stops its upstream. Anything that is not Lean (a provider, a user's
# observable) is subscribed the ordinary way, so the outermost source and the final
# consumer still get reactivex's protection.


class Lean(Observable[_T]):
    """An Observable made by an rxllm stream operator (see the comment above)."""

    def __init__(self, subscribe: Callable[..., abc.DisposableBase]) -> None:
        super().__init__(subscribe)
        self.raw = subscribe


class _Direct(Generic[_T]):
    """An observer that is just three callables: the next stage's closures."""

    __slots__ = ("on_completed", "on_error", "on_next")

    def __init__(
        self,
        on_next: Callable[[_T], None],
        on_error: Callable[[Exception], None],
        on_completed: Callable[[], None],
    ) -> None:
        self.on_next = on_next
        self.on_error = on_error
        self.on_completed = on_completed


def subscribe_lean(
    source: Observable[_T],
    on_next: Callable[[_T], None],
    on_error: Callable[[Exception], None],
    on_completed: Callable[[], None],
    scheduler: abc.SchedulerBase | None,
) -> abc.DisposableBase:
    """Subscribe to ``source``: directly if it is ``Lean``, else through ``subscribe``."""
    if isinstance(source, Lean):
        observer = cast(Any, _Direct(on_next, on_error, on_completed))
        try:
            subscription: abc.DisposableBase = source.raw(observer, scheduler)
        except Exception as exc:  # noqa: BLE001 - as Observable.subscribe does
            on_error(exc)
            return Disposable()
        return subscription
    return source.subscribe(on_next, on_error, on_completed, scheduler=scheduler)
