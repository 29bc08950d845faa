"""``first_token_timeout`` and ``idle_timeout``: bound the waits of a stream.

Neither reschedules a timer per event. ``first_token_timeout`` has one timer, cancelled by
the first token. ``idle_timeout`` records when the last event passed and, when its timer
fires, either times out or sleeps again until ``last + seconds``: at most one timer per
``seconds`` of streaming, exact to the scheduler's resolution.
"""

from __future__ import annotations

from typing import Any, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxllm.aio import scheduler_for
from rxllm.errors import ConfigError, FirstTokenTimeout, IdleTimeout, StreamInterrupted
from rxllm.events import TextDelta, is_content
from rxllm.response import Accumulator
from rxllm.typing import Operator

from ._resil import Lean, clock_for, partial_response, subscribe_lean

__all__ = ["first_token_timeout_", "idle_timeout_"]

_T = TypeVar("_T")


def _check(seconds: float) -> float:
    if not seconds > 0:
        raise ConfigError("a timeout must be a positive number of seconds")
    return float(seconds)


def first_token_timeout_(
    seconds: float, *, scheduler: abc.SchedulerBase | None = None
) -> Operator[_T, _T]:
    """Implementation of ``rxllm.operators.first_token_timeout`` (see there)."""
    limit = _check(seconds)

    def operator(source: Observable[_T]) -> Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T], subscribe_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            downstream = observer.on_next
            waiting = True  # no content yet: the timer runs
            ended = False
            subscription: abc.DisposableBase | None = None

            def fire(_: abc.SchedulerBase, __: Any = None) -> None:
                nonlocal ended
                if not waiting or ended:
                    return
                ended = True
                if subscription is not None:
                    subscription.dispose()  # closes the upstream request
                observer.on_error(
                    FirstTokenTimeout(f"no content within {limit:g} s", timeout=limit)
                )

            sched = scheduler_for(scheduler, subscribe_scheduler)
            timer = sched.schedule_relative(limit, fire)

            def on_next(event: Any) -> None:
                nonlocal waiting
                if waiting and is_content(event):
                    waiting = False
                    timer.dispose()
                downstream(event)

            def on_error(error: Exception) -> None:
                nonlocal ended
                if not ended:
                    ended = True
                    timer.dispose()
                    observer.on_error(error)

            def on_completed() -> None:
                nonlocal ended
                if not ended:
                    ended = True
                    timer.dispose()
                    observer.on_completed()

            subscription = subscribe_lean(
                source, on_next, on_error, on_completed, subscribe_scheduler
            )

            def dispose() -> None:
                nonlocal ended
                ended = True
                timer.dispose()
                if subscription is not None:
                    subscription.dispose()

            return Disposable(dispose)

        return Lean(subscribe)

    return operator


def idle_timeout_(
    seconds: float, *, scheduler: abc.SchedulerBase | None = None
) -> Operator[_T, _T]:
    """Implementation of ``rxllm.operators.idle_timeout`` (see there)."""
    limit = _check(seconds)

    def operator(source: Observable[_T]) -> Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T], subscribe_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            downstream = observer.on_next
            sched = scheduler_for(scheduler, subscribe_scheduler)
            clock = clock_for(sched)
            acc = Accumulator()
            add = acc.add
            texts: list[str] = []
            keep = texts.append
            last = 0.0
            armed = False  # the timer runs once content has passed
            ended = False
            timer: abc.DisposableBase | None = None
            subscription: abc.DisposableBase | None = None

            def fire(_: abc.SchedulerBase, __: Any = None) -> None:
                nonlocal ended, timer
                if ended:
                    return
                remaining = last + limit - clock()
                if remaining > 1e-9:  # an event came meanwhile: sleep until last + limit
                    timer = sched.schedule_relative(remaining, fire)
                    return
                ended = True
                if subscription is not None:
                    subscription.dispose()  # closes the upstream request
                cause = IdleTimeout(f"no event for {limit:g} s after content", timeout=limit)
                observer.on_error(
                    StreamInterrupted(
                        f"stream stalled after the first token: {cause}",
                        partial=partial_response(acc, texts),
                        cause=cause,
                    )
                )

            def on_next(event: Any) -> None:
                nonlocal last, armed, timer
                if armed:
                    last = clock()
                    if event.__class__ is TextDelta:
                        keep(event.text)
                    else:
                        add(event)
                    downstream(event)
                    return
                if event.__class__ is TextDelta:
                    keep(event.text)
                else:
                    add(event)
                if is_content(event) and not ended:
                    armed = True
                    last = clock()
                    timer = sched.schedule_relative(limit, fire)
                downstream(event)

            def stop() -> bool:
                nonlocal ended
                if ended:
                    return False
                ended = True
                if timer is not None:
                    timer.dispose()
                return True

            def on_error(error: Exception) -> None:
                if stop():
                    observer.on_error(error)

            def on_completed() -> None:
                if stop():
                    observer.on_completed()

            subscription = subscribe_lean(
                source, on_next, on_error, on_completed, subscribe_scheduler
            )

            def dispose() -> None:
                stop()
                if subscription is not None:
                    subscription.dispose()

            return Disposable(dispose)

        return Lean(subscribe)

    return operator
