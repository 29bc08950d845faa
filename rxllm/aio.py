"""Bridges between Observables and asyncio.

- ``to_aiter(observable)``: pull a pushing stream with ``async for``, with a bounded window
  that makes the source stop reading its socket when the consumer lags (see ``rxllm._valve``);
  leaving the loop (``break``, an exception, ``aclose()``) disposes the subscription.
- ``from_aiter(factory)``: a cold Observable from any async iterable (an SDK stream, a file).
- ``collect(observable)``: fold the stream into a ``Response``.
- ``scheduler_for(...)``: which scheduler a time-based operator uses.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any, TypeVar

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable
from reactivex.scheduler import TimeoutScheduler
from reactivex.scheduler.eventloop import AsyncIOScheduler

from ._valve import Valve, current_valve, valve_scope
from .errors import ConfigError
from .response import Accumulator, Response

__all__ = ["DEFAULT_WINDOW", "collect", "from_aiter", "scheduler_for", "to_aiter"]

T = TypeVar("T")

DEFAULT_WINDOW = 1024
"""Default number of items ``to_aiter`` buffers before it shuts the source's valve."""


async def to_aiter(
    source: Observable[T], *, window: int = DEFAULT_WINDOW, low_water: int | None = None
) -> AsyncIterator[T]:
    """Iterate ``source`` with ``async for``; lossless, ordered, with bounded memory.

    Items the consumer has not taken yet wait in a queue. When it holds ``window`` items
    the source is asked to stop reading (an rxllm HTTP source stops reading its socket, so
    TCP pushes back on the provider); at ``low_water`` (default ``window // 2``) it resumes.
    A source that emits synchronously, or one that is not rxllm's, is not paused: the queue
    then grows with it. The subscription starts at the first ``__anext__`` and is disposed
    when the loop ends for any reason (``break`` included), closing the upstream request.
    The stream's error is raised from the ``async for``.
    """
    if window < 1:
        raise ConfigError("window must be at least 1")
    low = window // 2 if low_water is None else low_water
    if not 0 <= low < window:
        raise ConfigError("low_water must be in [0, window)")
    loop = asyncio.get_running_loop()
    queue: deque[T] = deque()
    valve = Valve()
    state: list[Any] = [None, False, None]  # waiter, done, error

    def wake() -> None:
        waiter = state[0]
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_next(item: T) -> None:
        queue.append(item)
        if len(queue) >= window:
            valve.shut()
        if state[0] is not None:
            wake()

    def on_error(error: Exception) -> None:
        state[1], state[2] = True, error
        wake()

    def on_completed() -> None:
        state[1] = True
        wake()

    with valve_scope(valve):
        subscription = source.subscribe(on_next, on_error, on_completed)
    try:
        while True:
            if queue:
                item = queue.popleft()
                if len(queue) <= low and not valve.is_open:
                    valve.open()
                yield item
            elif state[1]:
                if state[2] is not None:
                    raise state[2]
                return
            else:
                waiter = state[0] = loop.create_future()
                try:
                    await waiter
                finally:
                    state[0] = None
    finally:
        subscription.dispose()


def from_aiter(factory: Callable[[], AsyncIterable[T]]) -> Observable[T]:
    """A cold Observable that iterates ``factory()`` afresh for each subscription.

    Lets any async stream join a pipeline (an SDK's stream, a websocket, a file). Items are
    emitted on the event loop as they arrive; a sink's valve (``to_aiter``) pauses the
    iteration; disposing the subscription cancels it and closes the iterator.
    """

    def subscribe(observer: abc.ObserverBase[T], _: Any = None) -> abc.DisposableBase:
        loop = asyncio.get_running_loop()
        valve = current_valve()

        async def run() -> None:
            iterator = factory().__aiter__()
            try:
                while True:
                    if valve is not None and not valve.is_open:
                        await valve.wait_open()
                    try:
                        item = await iterator.__anext__()
                    except StopAsyncIteration:
                        break
                    observer.on_next(item)
                observer.on_completed()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the iterator's error is the stream's
                observer.on_error(exc)
            finally:
                aclose = getattr(iterator, "aclose", None)
                if aclose is not None:
                    await aclose()

        task = loop.create_task(run())

        def dispose() -> None:
            task.cancel()

        return Disposable(dispose)

    return reactivex.create(subscribe)


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
