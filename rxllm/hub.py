"""``Hub``: one upstream generation, many subscribers, replay and resume by event id.

::

    hub = Hub()                                   # a MemoryStore by default
    stream_id = await hub.start(gpt.stream(request))
    async for stamped in hub.listen(stream_id, from_start=True):
        print(stamped.id, stamped.event)          # ids are what SSE sends as ``id:``

How it works, per stream:

- **Upstream.** ``start`` subscribes the source once, inside ``valve_scope`` of a valve
  that only the hub's own backlog controls: no subscriber's valve ever applies, so one
  slow subscriber never throttles the upstream. Events go to a backlog; a pump task
  takes them in batches, awaits ``store.append`` (ids, replay window) and fans each
  batch out. The valve shuts only if the *store* falls behind (a slow networked store);
  a source that ignores it and overruns ``max_backlog`` ends the stream with
  ``SlowConsumer``.
- **Fan-out.** Each subscriber has its own bounded queue. The hub never waits for one:
  if a batch does not fit, the subscriber gets what fits and is dropped; its iterator
  raises ``SlowConsumer`` after the events it already had. The others keep their pace.
- **Replay and resume.** A subscriber is registered for live events *before* it reads
  the store; it then reads pages after its id until it has caught up, and takes live
  events from its queue, skipping any whose id it already had. Registration first means
  no gap (an event appended later is in the queue; one appended earlier is in the store,
  since the pump appends before it fans out); comparing ids means no duplicate at the
  seam, whatever the interleaving. A trimmed id raises ``ReplayWindowExceeded``, an id the
  stream never issued ``UnknownId``.
- **End.** Completion or an error is recorded in the store after the last event, then
  delivered to every subscriber after its events; late joiners find it in the store.
  Each subscriber raises its own copy of the error. The hub forgets a stream once it has
  ended; the store forgets it ``max_age`` later.

A hub delivers live events only for streams it runs; a stream that another hub runs on a
shared store can be replayed once it has ended. Everything runs on one event loop.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Sequence
from types import TracebackType

from reactivex import Observable, abc

from ._valve import Valve, valve_scope
from .aio import from_aiter
from .errors import ConfigError, SlowConsumer, StreamCancelled, UnknownId
from .events import Event
from .store import DEFAULT_PAGE, MemoryStore, Stamped, Store

__all__ = ["DEFAULT_MAX_BACKLOG", "DEFAULT_QUEUE_LIMIT", "Hub", "Listener", "Stamped"]

log = logging.getLogger("rxllm.hub")

DEFAULT_QUEUE_LIMIT = 1024
"""Events a subscriber may leave unread before it is dropped with ``SlowConsumer``."""

DEFAULT_MAX_BACKLOG = 65_536
"""Events received from the upstream and not yet stored before the stream fails."""

_BATCH = 4096
"""The most events the pump stores and fans out at once."""


def _copy_error(error: BaseException) -> BaseException:
    """A copy of ``error`` for one subscriber to raise (raising one object in many tasks
    would grow its traceback with every raise); the original if it cannot be copied."""
    try:
        clone = copy.copy(error)
    except Exception:  # noqa: BLE001 - an exception whose class cannot be rebuilt
        return error
    if type(clone) is not type(error):
        return error
    clone.__cause__ = error.__cause__
    return clone


class Listener(AsyncIterator[Stamped]):
    """One subscriber of a hub stream: an async iterator of ``Stamped`` events.

    Made by ``Hub.listen``. It ends when the stream completes, raises the stream's error,
    ``SlowConsumer`` if it was dropped (after the events it already had),
    ``ReplayWindowExceeded`` or ``UnknownId`` for a resume id it cannot honour. ``aclose()``
    (or ``async with``) unsubscribes it.
    """

    __slots__ = (
        "_dedupe",
        "_dropped",
        "_end",
        "_last",
        "_limit",
        "_live",
        "_page",
        "_page_size",
        "_probe",
        "_queue",
        "_replaying",
        "_store",
        "_store_end",
        "_stream",
        "_waiter",
        "stream_id",
    )

    def __init__(
        self,
        store: Store,
        stream_id: str,
        *,
        after: str | None,
        from_start: bool,
        limit: int,
        page_size: int,
    ) -> None:
        self.stream_id = stream_id
        self._store = store
        self._limit = limit
        self._page_size = page_size
        self._queue: deque[Stamped] = deque()
        self._page: deque[Stamped] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._stream: _Stream | None = None  # set while registered for live events
        self._live = False  # whether it was ever registered for live events
        self._last = after  # the id of the last event delivered (or resumed after)
        self._replaying = after is not None or from_start
        self._dedupe = self._replaying
        self._probe = False  # live-only on a stream this hub does not run: ask the store
        self._dropped = False
        self._end: tuple[BaseException | None] | None = None  # delivered by the hub
        self._store_end: tuple[BaseException | None] | None = None  # found in the store

    def __repr__(self) -> str:
        return (
            f"Listener(stream_id={self.stream_id!r}, last_id={self._last!r}, "
            f"buffered={len(self._queue)}, dropped={self._dropped})"
        )

    @property
    def last_id(self) -> str | None:
        """The id of the last event this listener returned (or the id it resumed after)."""
        return self._last

    @property
    def buffered(self) -> int:
        """Live events waiting in this listener's queue (never more than its limit)."""
        return len(self._queue)

    @property
    def dropped(self) -> bool:
        """Whether the hub dropped this listener because its queue was full."""
        return self._dropped

    def __aiter__(self) -> Listener:
        """Return the listener itself."""
        return self

    async def __anext__(self) -> Stamped:
        """The next event after ``last_id``, replayed from the store or live."""
        while True:
            page = self._page
            if page:
                item = page.popleft()
                self._last = item.id
                return item
            if self._replaying or self._probe:
                try:
                    await (self._read_page() if self._replaying else self._read_info())
                except asyncio.CancelledError:
                    raise  # the read may be retried: stay registered
                except Exception as exc:
                    # ReplayWindowExceeded, UnknownId, a failing store: this listener is
                    # done; it leaves the hub and raises the error again if asked again.
                    self._replaying = self._probe = False
                    self._page.clear()
                    self._store_end = (exc,)
                    self._unregister()
                    raise
                continue
            if self._store_end is not None:
                self._finish(self._store_end[0])
            queue = self._queue
            while queue:
                item = queue.popleft()
                if self._dedupe:
                    last = self._last
                    if last is not None and item.id <= last:
                        continue  # already replayed from the store
                    self._dedupe = False
                self._last = item.id
                return item
            if self._dropped:
                self._unregister()
                raise SlowConsumer(
                    f"a subscriber of stream {self.stream_id!r} was dropped: "
                    f"{self._limit} events were waiting unread (queue_limit)",
                    limit=self._limit,
                )
            if self._end is not None:
                self._finish(self._end[0])
            if self._stream is None:
                raise StopAsyncIteration  # closed
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    async def _read_info(self) -> None:
        info = await self._store.info(self.stream_id)
        if not info.ended:
            raise UnknownId(
                f"stream {self.stream_id!r} is not running in this hub",
                stream_id=self.stream_id,
            )
        self._probe = False
        self._store_end = (info.error,)

    async def _read_page(self) -> None:
        after = self._last
        page = await self._store.read(self.stream_id, after=after, limit=self._page_size)
        self._page.extend(page.items)
        if page.ended:
            self._replaying = False
            self._store_end = (page.error,)
        elif len(page.items) < self._page_size:
            self._replaying = False  # caught up: the rest comes live
            if not self._live:
                # Still running, but elsewhere: what was replayed, then an explicit error.
                self._store_end = (
                    UnknownId(
                        f"stream {self.stream_id!r} is not running in this hub",
                        stream_id=self.stream_id,
                    ),
                )

    def _finish(self, error: BaseException | None) -> None:
        self._unregister()
        self._replaying = False
        if error is not None:
            raise _copy_error(error)
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Unsubscribe; a pending ``__anext__`` ends with ``StopAsyncIteration``."""
        self._unregister()
        self._replaying = False
        self._page.clear()
        self._queue.clear()
        self._end = self._store_end = None
        self._dropped = False
        self._wake()

    async def __aenter__(self) -> Listener:
        """Return the listener; leaving the block closes it."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the listener."""
        await self.aclose()

    # --- called by the hub (synchronously, on the loop) ----------------------------------

    def _push(self, batch: Sequence[Stamped]) -> bool:
        queue = self._queue
        room = self._limit - len(queue)
        if len(batch) <= room:
            queue.extend(batch)
        else:
            if room > 0:
                queue.extend(batch[:room])
            self._dropped = True
            self._stream = None
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return not self._dropped

    def _ended(self, error: BaseException | None) -> None:
        self._end = (error,)
        self._stream = None
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _unregister(self) -> None:
        stream = self._stream
        if stream is not None:
            self._stream = None
            stream.listeners.pop(self, None)


class _Stream:
    """One upstream generation run by the hub."""

    __slots__ = (
        "backlog",
        "high",
        "id",
        "limit",
        "listeners",
        "low",
        "subscription",
        "task",
        "terminal",
        "valve",
        "waiter",
    )

    def __init__(self, stream_id: str, max_backlog: int) -> None:
        self.id = stream_id
        self.backlog: deque[Event] = deque()
        self.limit = max_backlog
        self.high = max(1, max_backlog // 2)
        self.low = max_backlog // 4
        self.listeners: dict[Listener, None] = {}  # an ordered set
        self.valve = Valve()
        self.waiter: asyncio.Future[None] | None = None
        self.terminal: tuple[BaseException | None] | None = None
        self.subscription: abc.DisposableBase | None = None
        self.task: asyncio.Task[None] | None = None

    def on_next(self, event: Event) -> None:
        if self.terminal is not None:
            return
        backlog = self.backlog
        if len(backlog) >= self.limit:
            self.dispose_upstream()
            self.end(
                SlowConsumer(
                    f"stream {self.id!r}: the store fell {self.limit} events behind the "
                    "upstream (max_backlog)",
                    limit=self.limit,
                )
            )
            return
        backlog.append(event)
        if len(backlog) >= self.high:
            self.valve.shut()
        self.wake()

    def on_error(self, error: Exception) -> None:
        self.end(error)

    def on_completed(self) -> None:
        self.end(None)

    def end(self, error: BaseException | None) -> None:
        if self.terminal is None:
            self.terminal = (error,)
            self.wake()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def dispose_upstream(self) -> None:
        subscription, self.subscription = self.subscription, None
        if subscription is not None:
            subscription.dispose()

    def fan_out(self, batch: Sequence[Stamped]) -> None:
        dropped: list[Listener] | None = None
        for listener in self.listeners:
            if not listener._push(batch):
                if dropped is None:
                    dropped = []
                dropped.append(listener)
        if dropped is not None:
            for listener in dropped:
                self.listeners.pop(listener, None)

    def deliver_end(self, error: BaseException | None) -> None:
        listeners, self.listeners = self.listeners, {}
        for listener in listeners:
            listener._ended(error)


class Hub:
    """Run each upstream once and fan it out to any number of subscribers (module doc).

    Args:
        store: where events get ids and a replay window (default: a new ``MemoryStore``).
        queue_limit: the default per-subscriber queue bound (``listen`` can override it).
        max_backlog: events from an upstream waiting for the store; at half of it the
            upstream's valve shuts, beyond it the stream fails with ``SlowConsumer``.
        page_size: events read from the store per replay step.
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        page_size: int = DEFAULT_PAGE,
    ) -> None:
        if queue_limit < 1:
            raise ConfigError("Hub: queue_limit must be at least 1")
        if max_backlog < 1:
            raise ConfigError("Hub: max_backlog must be at least 1")
        if page_size < 1:
            raise ConfigError("Hub: page_size must be at least 1")
        self.store: Store = MemoryStore() if store is None else store
        self.queue_limit = queue_limit
        self.max_backlog = max_backlog
        self.page_size = page_size
        self._streams: dict[str, _Stream] = {}
        self._closers: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"Hub(store={self.store!r}, running={len(self._streams)})"

    @property
    def running(self) -> tuple[str, ...]:
        """The ids of the streams whose upstream is running in this hub."""
        return tuple(self._streams)

    def listeners(self, stream_id: str) -> int:
        """How many subscribers currently receive ``stream_id``'s live events."""
        stream = self._streams.get(stream_id)
        return 0 if stream is None else len(stream.listeners)

    async def start(self, source: Observable[Event], *, stream_id: str | None = None) -> str:
        """Subscribe ``source`` once and return its stream id (default: a random hex id).

        ``ConfigError`` if ``stream_id`` is running or still known to the store.
        """
        sid = uuid.uuid4().hex if stream_id is None else stream_id
        if sid in self._streams:
            raise ConfigError(f"stream {sid!r} is already running")
        stream = _Stream(sid, self.max_backlog)
        self._streams[sid] = stream  # listeners may register while the store creates it
        try:
            await self.store.create(sid)
        except BaseException as exc:
            del self._streams[sid]
            stream.deliver_end(exc)
            raise
        stream.task = asyncio.get_running_loop().create_task(
            self._pump(stream), name=f"rxllm.hub:{sid}"
        )
        with valve_scope(stream.valve):
            try:
                stream.subscription = source.subscribe(
                    stream.on_next, stream.on_error, stream.on_completed
                )
            except Exception as exc:  # noqa: BLE001 - a source that fails to subscribe
                stream.end(exc)
        if stream.terminal is not None:
            stream.dispose_upstream()
        return sid

    def listen(
        self,
        stream_id: str,
        *,
        after: str | None = None,
        from_start: bool = False,
        queue_limit: int | None = None,
    ) -> Listener:
        """Subscribe to ``stream_id``: an async iterator of ``Stamped`` events.

        - default: live events from now on;
        - ``from_start=True``: every event still in the replay window, then live ones;
        - ``after=id``: exactly the events after ``id``, once each, in order, then live
          ones (``ReplayWindowExceeded`` if ``id`` was trimmed, ``UnknownId`` if the stream
          never issued it).

        The listener is registered for live events at once (so nothing appended after this
        call is missed); replay happens on the first ``__anext__``. ``queue_limit``
        (default: the hub's) bounds its queue; when full, it is dropped (``SlowConsumer``).
        """
        if after is not None and from_start:
            raise ConfigError("listen: pass after= or from_start=True, not both")
        limit = self.queue_limit if queue_limit is None else queue_limit
        if limit < 1:
            raise ConfigError("listen: queue_limit must be at least 1")
        listener = Listener(
            self.store,
            stream_id,
            after=after,
            from_start=from_start,
            limit=limit,
            page_size=self.page_size,
        )
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.listeners[listener] = None
            listener._stream = stream
            listener._live = True
        elif after is None and not from_start:
            # Live only, but not running here: an ended stream ends the listener at once
            # (with its error); one running elsewhere or unknown raises UnknownId.
            listener._probe = True
        # Otherwise replay what the store has; a stream still running elsewhere raises
        # UnknownId once the replay has caught up.
        return listener

    def observe(
        self,
        stream_id: str,
        *,
        after: str | None = None,
        from_start: bool = False,
        queue_limit: int | None = None,
    ) -> Observable[Stamped]:
        """``listen`` as a cold Observable: each subscription is one listener (see there)."""

        def factory() -> Listener:
            return self.listen(
                stream_id, after=after, from_start=from_start, queue_limit=queue_limit
            )

        return from_aiter(factory)

    async def cancel(self, stream_id: str) -> bool:
        """Stop ``stream_id``'s upstream (closing its request); subscribers get
        ``StreamCancelled`` after the events already received. False if it was not running.
        """
        stream = self._streams.get(stream_id)
        if stream is None:
            return False
        stream.dispose_upstream()
        stream.end(StreamCancelled(f"stream {stream_id!r} was cancelled", stream_id=stream_id))
        if stream.task is not None:
            await asyncio.shield(stream.task)
        return True

    async def join(self, stream_id: str) -> None:
        """Wait until ``stream_id`` has ended and its end was delivered (at once if it is
        not running here). Cancelling the wait does not cancel the stream."""
        stream = self._streams.get(stream_id)
        if stream is not None and stream.task is not None:
            await asyncio.shield(stream.task)

    async def aclose(self) -> None:
        """Cancel every running stream and wait until each has ended."""
        for stream_id in list(self._streams):
            await self.cancel(stream_id)
        if self._closers:
            await asyncio.gather(*self._closers, return_exceptions=True)

    async def __aenter__(self) -> Hub:
        """Return the hub; leaving the block cancels its running streams."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Cancel every running stream."""
        await self.aclose()

    async def _pump(self, stream: _Stream) -> None:
        """Store each batch of the backlog, fan it out, then record and deliver the end."""
        store, sid = self.store, stream.id
        loop = asyncio.get_running_loop()
        backlog = stream.backlog
        error: BaseException | None
        try:
            while True:
                if backlog:
                    if len(backlog) <= _BATCH:
                        batch = list(backlog)
                        backlog.clear()
                    else:
                        batch = [backlog.popleft() for _ in range(_BATCH)]
                    if not stream.valve.is_open and len(backlog) <= stream.low:
                        stream.valve.open()
                    stamped = await store.append(sid, batch)
                    stream.fan_out(stamped)
                    continue
                if stream.terminal is not None:
                    break
                waiter = stream.waiter = loop.create_future()
                try:
                    await waiter
                finally:
                    stream.waiter = None
            error = stream.terminal[0]
        except asyncio.CancelledError:
            # The task itself was cancelled (loop shutdown): end the stream, close it in
            # the store from a new task, and let the cancellation through.
            stream.dispose_upstream()
            error = StreamCancelled(f"stream {sid!r} was cancelled", stream_id=sid)
            self._streams.pop(sid, None)
            stream.deliver_end(error)
            closer = loop.create_task(self._close_quietly(sid, error))
            self._closers.add(closer)
            closer.add_done_callback(self._closers.discard)
            raise
        except Exception as exc:  # noqa: BLE001 - the store failed: the stream ends with it
            stream.dispose_upstream()
            error = exc
        await self._close_quietly(sid, error)
        self._streams.pop(sid, None)
        stream.deliver_end(error)

    async def _close_quietly(self, stream_id: str, error: BaseException | None) -> None:
        try:
            await self.store.close(stream_id, error)
        except Exception:  # subscribers still get the end; the failure is logged
            log.warning("could not record the end of stream %r", stream_id, exc_info=True)
