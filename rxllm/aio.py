"""Bridges between Observables and asyncio: ``collect``, ``scheduler_for``."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from reactivex import Observable, abc
from reactivex.scheduler import TimeoutScheduler
from reactivex.scheduler.eventloop import AsyncIOScheduler

from .response import Accumulator, Response

__all__ = ["collect", "scheduler_for"]


async def collect(source: Observable[Any]) -> Response:
    """Subscribe to ``source`` and fold every event into a ``Response``.

    Raises whatever the stream ends with (``StreamInterrupted`` carries the partial
    ``Response``). Cancelling the awaiting task disposes the subscription, which closes the
    upstream request.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Response] = loop.create_future()
    acc = Accumulator()

    def on_error(error: Exception) -> None:
        if not done.done():
            done.set_exception(error)

    def on_completed() -> None:
        if not done.done():
            done.set_result(acc.response())

    subscription = source.subscribe(acc.add, on_error, on_completed)
    try:
        return await done
    finally:
        subscription.dispose()


_schedulers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncIOScheduler] = (
    weakref.WeakKeyDictionary()
)


def scheduler_for(
    scheduler: abc.SchedulerBase | None = None,
    subscribe_scheduler: abc.SchedulerBase | None = None,
) -> abc.SchedulerBase:
    """The scheduler a time-based operator should use.

    In order: the one the operator was given, the one passed to ``subscribe``, an
    ``AsyncIOScheduler`` for the running event loop (one per loop), and outside any loop
    reactivex's ``TimeoutScheduler``. Operators call this at subscription time, so tests pass
    a ``TestScheduler`` and run in virtual time.
    """
    if scheduler is not None:
        return scheduler
    if subscribe_scheduler is not None:
        return subscribe_scheduler
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return TimeoutScheduler.singleton()
    found = _schedulers.get(loop)
    if found is None:
        found = _schedulers[loop] = AsyncIOScheduler(loop)
    return found
