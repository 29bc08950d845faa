"""``retry``: send the request again, with backoff, while nothing has reached the consumer."""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from typing import Any, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxllm.aio import scheduler_for
from rxllm.typing import Operator

from ._resil import (
    ErrorFilter,
    HoldBack,
    Lean,
    Slot,
    as_predicate,
    backoff,
    check_retry_settings,
    is_retryable,
    recoverable,
    subscribe_lean,
)

__all__ = ["retry_"]

_T = TypeVar("_T")


def retry_(
    *,
    on: ErrorFilter | None = None,
    attempts: int = 3,
    wait_initial: float = 0.5,
    wait_max: float = 8.0,
    jitter: float = 0.5,
    max_retry_after: float = 120.0,
    scheduler: abc.SchedulerBase | None = None,
    random: Callable[[], float] | None = None,
) -> Operator[_T, _T]:
    """Implementation of ``rxllm.operators.retry`` (see there)."""
    check_retry_settings(
        attempts=attempts,
        wait_initial=wait_initial,
        wait_max=wait_max,
        jitter=jitter,
        max_retry_after=max_retry_after,
    )
    handles = as_predicate(on, is_retryable)
    rand = random if random is not None else _random.random

    def operator(source: Observable[_T]) -> Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T], subscribe_scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            sched = scheduler_for(scheduler, subscribe_scheduler)
            slot = Slot()
            timer: list[abc.DisposableBase] = []
            gate = HoldBack(observer.on_next)
            on_next = gate.on_next
            stopped = False  # a terminal notification went downstream
            tries = 1

            def fail(error: Exception) -> None:
                nonlocal stopped
                if not stopped:
                    stopped = True
                    observer.on_error(error)

            def on_error(error: Exception) -> None:
                nonlocal tries
                if stopped:
                    return
                if gate.live or slot.disposed or tries >= attempts:
                    fail(error)
                    return
                if not (recoverable(error) and handles(error)):
                    fail(error)
                    return
                retry_after = getattr(error, "retry_after", None)
                if retry_after is not None and retry_after > max_retry_after:
                    fail(error)  # asked to wait longer than we may: fail now
                    return
                wait = backoff(
                    tries - 1,
                    wait_initial=wait_initial,
                    wait_max=wait_max,
                    jitter=jitter,
                    random=rand,
                )
                if retry_after is not None:
                    wait = max(wait, float(retry_after))
                gate.drop()  # the failed attempt leaves no trace
                slot.clear()
                tries += 1
                timer.clear()
                timer.append(sched.schedule_relative(wait, resubscribe))

            def resubscribe(_: abc.SchedulerBase, __: Any = None) -> None:
                if not slot.disposed:
                    subscribe_source()

            def on_completed() -> None:
                nonlocal stopped
                if stopped:
                    return
                stopped = True
                gate.flush()  # a stream that ends with no content still shows its frames
                observer.on_completed()

            def subscribe_source() -> None:
                slot.subscribe(
                    lambda: subscribe_lean(
                        source, on_next, on_error, on_completed, subscribe_scheduler
                    )
                )

            def dispose() -> None:
                slot.dispose()
                for t in timer:
                    t.dispose()

            subscribe_source()
            return Disposable(dispose)

        return Lean(subscribe)

    return operator
