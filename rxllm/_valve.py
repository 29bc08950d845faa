"""Demand valves: how a slow sink makes a pushing source stop reading its socket.

Rx pushes; consumers pull. A sink that buffers (``to_aiter``, the SSE gateway) creates a
``Valve`` and subscribes inside ``valve_scope(valve)``. Every rxllm source (the HTTP
transport, ``from_aiter``) looks the valve up with ``current_valve()`` when it is subscribed,
and before each socket read waits while the valve is shut. The sink shuts the valve when its
buffer reaches the high-water mark and opens it at the low-water mark, so memory stays
bounded, TCP pushes back on the provider, and nothing is dropped or reordered.

The valve travels in a ``contextvars.ContextVar``. asyncio copies the context into every task
and every ``call_soon``/``call_later`` callback, so a source subscribed late - by ``fallback``
after the first provider failed, by ``retry`` after a backoff - still finds the valve of the
sink it feeds. Operators between source and sink are synchronous and need no change.

Operators that act on demand (``coalesce``, ``latest``, ``drop_oldest``) find the sink's
valve the same way, ``watch`` it to learn the moment it opens again, and subscribe their
own source inside ``valve_scope`` of a valve of their own: the source then paces itself on
the operator's bounded buffer instead of the sink's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

__all__ = ["Valve", "current_valve", "valve_scope"]


class Valve:
    """An open/shut gate between a sink's buffer and the sources that fill it."""

    __slots__ = ("_event", "_open", "_watchers", "pauses")

    def __init__(self) -> None:
        self._open = True
        self._event: asyncio.Event | None = None
        self._watchers: list[Callable[[], None]] = []
        self.pauses = 0
        """How many times the valve was shut (for tests and metrics)."""

    @property
    def is_open(self) -> bool:
        """Whether sources may read."""
        return self._open

    def shut(self) -> None:
        """Ask sources to stop reading (the sink's buffer is full)."""
        if self._open:
            self._open = False
            self.pauses += 1
            if self._event is not None:
                self._event.clear()
            if self._watchers:
                self._notify()

    def open(self) -> None:
        """Let sources read again (the sink drained to its low-water mark).

        Watchers run first, synchronously: an operator holding items for the sink hands
        them over (and may fill the sink so that it shuts again) before any waiting source
        is woken, so older items always reach the sink before newer ones are read.
        """
        if not self._open:
            self._open = True
            if self._watchers:
                self._notify()
            if self._open and self._event is not None:
                self._event.set()

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` after every change (read ``is_open``); return an unwatch.

        Callbacks run synchronously inside ``open()``/``shut()``, on the thread that changed
        the valve, and may change it again (the nested change notifies again). They must not
        raise.
        """
        self._watchers.append(callback)

        def unwatch() -> None:
            with contextlib.suppress(ValueError):
                self._watchers.remove(callback)

        return unwatch

    def _notify(self) -> None:
        for callback in tuple(self._watchers):
            callback()

    async def wait_open(self) -> None:
        """Return once the valve is open (at once if it is)."""
        if self._open:
            return
        if self._event is None:
            self._event = asyncio.Event()
        await self._event.wait()


_current: ContextVar[Valve | None] = ContextVar("rxllm_valve", default=None)


def current_valve() -> Valve | None:
    """The valve of the sink being subscribed in this context, if any."""
    return _current.get()


@contextlib.contextmanager
def valve_scope(valve: Valve | None) -> Iterator[None]:
    """Make ``valve`` the current valve while subscribing (``None`` hides any outer valve)."""
    token = _current.set(valve)
    try:
        yield
    finally:
        _current.reset(token)
