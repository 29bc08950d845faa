"""Bridges between Observables and asyncio: ``collect``."""

from __future__ import annotations

import asyncio
from typing import Any

from reactivex import Observable

from .response import Accumulator, Response

__all__ = ["collect"]


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
