"""``Hub``: one upstream, many subscribers, replay and resume without gaps or duplicates."""

from __future__ import annotations

import asyncio
import gc
import random
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import pytest
import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxllm._valve import Valve, current_valve, valve_scope
from rxllm.aio import from_aiter
from rxllm.errors import (
    ConfigError,
    ReplayWindowExceeded,
    ServerError,
    SlowConsumer,
    StreamCancelled,
    UnknownId,
)
from rxllm.events import Event, Finished, TextDelta
from rxllm.hub import Hub, Listener
from rxllm.store import MemoryStore, Stamped


class Clock:
    """A hand-moved monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def paced(
    n: int,
    *,
    rng: random.Random | None = None,
    error: Exception | None = None,
    counter: list[int] | None = None,
) -> Observable[Event]:
    """Events TextDelta("1") .. TextDelta(str(n)), one or a few per loop iteration."""

    async def gen() -> AsyncIterator[Event]:
        for i in range(1, n + 1):
            if counter is not None:
                counter[0] += 1
            yield TextDelta(text=str(i))
            for _ in range(1 if rng is None else rng.randint(0, 3)):
                await asyncio.sleep(0)
        if error is not None:
            raise error

    return from_aiter(gen)


def numbers(items: list[Stamped]) -> list[int]:
    """The event numbers (their text) of stamped deltas."""
    out = []
    for s in items:
        assert isinstance(s.event, TextDelta)
        out.append(int(s.event.text))
    return out


async def drain(listener: Listener, *, rng: random.Random | None = None) -> list[Stamped]:
    """Read a listener to its end (pausing at random if rng is given)."""
    got = []
    async for stamped in listener:
        got.append(stamped)
        if rng is not None:
            for _ in range(rng.randint(0, 2)):
                await asyncio.sleep(0)
    return got


async def outcome(listener: Listener) -> tuple[list[Stamped], Exception | None]:
    """Read a listener to its end: what it returned, and the error it ended with."""
    got: list[Stamped] = []
    while True:
        try:
            got.append(await anext(listener))
        except StopAsyncIteration:
            return got, None
        except Exception as exc:
            return got, exc


async def test_one_upstream_subscription_for_many_listeners() -> None:
    """The upstream is subscribed once however many subscribers listen."""
    subscriptions = 0
    inner = paced(20)

    def subscribe(observer: abc.ObserverBase[Event], scheduler: Any = None) -> abc.DisposableBase:
        nonlocal subscriptions
        subscriptions += 1
        return inner.subscribe(observer, scheduler=scheduler)

    async with Hub() as hub:
        sid = await hub.start(reactivex.create(subscribe))
        listeners = [hub.listen(sid) for _ in range(10)]
        results = await asyncio.gather(*(drain(li) for li in listeners))
    assert subscriptions == 1
    for got in results:
        assert numbers(got) == list(range(1, 21))
        assert [s.id for s in got] == sorted(s.id for s in got)


async def test_frozen_subscriber_is_dropped_and_the_others_get_everything() -> None:
    """99 readers get all events; a frozen one is dropped at its limit; memory stays flat."""
    total, limit = 2000, 64
    produced = [0]
    store = MemoryStore(max_events=200)
    async with Hub(store, queue_limit=limit) as hub:
        sid = await hub.start(paced(total, counter=produced))
        frozen = hub.listen(sid)
        readers = [hub.listen(sid) for _ in range(99)]
        counts = [0] * 99
        samples: list[int] = []

        async def read(index: int, listener: Listener) -> None:
            async for stamped in listener:
                counts[index] += 1
                if index == 0 and counts[0] in (1000, total - 1):
                    # Trace allocations over the last 1,000 events: what is still alive at
                    # the end of the interval is what the hub kept.
                    gc.collect()
                    if counts[0] == 1000:
                        tracemalloc.start()
                    else:
                        samples.append(tracemalloc.get_traced_memory()[0])
                        tracemalloc.stop()
                    assert frozen.buffered <= limit
                    assert stamped.id is not None

        try:
            await asyncio.gather(*(read(i, li) for i, li in enumerate(readers)))
        finally:
            tracemalloc.stop()
        assert produced[0] == total  # the upstream was never held back by the frozen one
        assert counts == [total] * 99
        assert frozen.dropped
        assert frozen.buffered == limit
        # Of what was allocated over those 1,000 events (about 100,000 deliveries), only
        # the store's 200-event window and loop bookkeeping (about 100 KiB) stay alive.
        assert samples[0] < 256 * 1024
        got, error = await outcome(frozen)
        assert numbers(got) == list(range(1, limit + 1))  # what it had, then the error
        assert isinstance(error, SlowConsumer)
        assert error.limit == limit
        assert error.kind == "slow_consumer"


async def test_dropped_subscriber_leaves_the_hub_at_once() -> None:
    """A dropped subscriber is unregistered: the hub holds no backlog for it."""
    async with Hub(queue_limit=4) as hub:
        sid = await hub.start(paced(50))
        frozen = hub.listen(sid)
        reader = hub.listen(sid)
        assert hub.listeners(sid) == 2
        got = []
        async for stamped in reader:
            got.append(stamped)
            if len(got) == 10:
                assert hub.listeners(sid) == 1
        assert frozen.dropped
        assert frozen.buffered == 4


async def test_resume_after_an_id_mid_stream_has_no_gap_or_duplicate() -> None:
    """Resuming after id N gives exactly N+1.. then live events, under many interleavings."""
    for seed in range(40):
        rng = random.Random(seed)
        total = 120
        async with Hub(page_size=rng.choice([1, 3, 1024])) as hub:
            sid = await hub.start(paced(total, rng=rng))
            first = hub.listen(sid)
            seen: list[Stamped] = []
            async for stamped in first:
                seen.append(stamped)
                if len(seen) == rng.randint(1, 60) or len(seen) >= 60:
                    break
            await first.aclose()
            for _ in range(rng.randint(0, 5)):
                await asyncio.sleep(0)
            resume_at = rng.choice(seen)
            resumed = hub.listen(sid, after=resume_at.id)
            for _ in range(rng.randint(0, 5)):  # live events pile up before replay starts
                await asyncio.sleep(0)
            got = await drain(resumed, rng=rng)
        start = int(resume_at.id)
        assert numbers(got) == list(range(start + 1, total + 1)), seed
        assert [int(s.id) for s in got] == list(range(start + 1, total + 1)), seed


async def test_late_join_from_the_start_while_running_and_after_the_end() -> None:
    """from_start replays the window then goes live; after the end it replays and stops."""
    async with Hub() as hub:
        sid = await hub.start(paced(30))
        early = hub.listen(sid)
        got: list[Stamped] = []
        async for stamped in early:
            got.append(stamped)
            if len(got) == 10:
                break
        late = hub.listen(sid, from_start=True)
        assert numbers(await drain(late)) == list(range(1, 31))
        assert hub.running == ()
        after_end = hub.listen(sid, from_start=True)
        assert numbers(await drain(after_end)) == list(range(1, 31))
        live_only = hub.listen(sid)
        assert await drain(live_only) == []  # ended: nothing more will come


async def test_trimmed_id_raises_replay_window_exceeded() -> None:
    """An id that left the window raises ReplayWindowExceeded, never a silent gap."""
    async with Hub(MemoryStore(max_events=10)) as hub:
        sid = await hub.start(paced(30))
        await drain(hub.listen(sid))
        with pytest.raises(ReplayWindowExceeded) as info:
            await drain(hub.listen(sid, after="0000000000000005"))
        assert info.value.oldest == "0000000000000021"
        tail = await drain(hub.listen(sid, after="0000000000000020"))
        assert numbers(tail) == list(range(21, 31))


async def test_a_failed_resume_leaves_the_hub() -> None:
    """A listener whose resume id cannot be honoured is unregistered at once."""
    async with Hub(MemoryStore(max_events=5)) as hub:
        sid = await hub.start(paced(1000))
        reader = hub.listen(sid)
        for _ in range(10):  # let the window move past the first events
            await anext(reader)
        await reader.aclose()
        listener = hub.listen(sid, after="0000000000000001")
        assert hub.listeners(sid) == 1
        with pytest.raises(ReplayWindowExceeded):
            await anext(listener)
        assert hub.listeners(sid) == 0
        with pytest.raises(ReplayWindowExceeded):
            await anext(listener)  # asked again, the same answer


async def test_a_stream_run_by_another_hub_on_a_shared_store() -> None:
    """Another hub on the same store replays a running stream, then says it cannot go live."""
    store = MemoryStore()
    async with Hub(store) as runner, Hub(store) as other:
        sid = await runner.start(paced(1000))
        got: list[Stamped] = []
        async for stamped in runner.listen(sid):
            got.append(stamped)
            if len(got) == 3:
                break
        replayed, error = await outcome(other.listen(sid, from_start=True))
        assert isinstance(error, UnknownId)
        assert numbers(replayed)[:3] == [1, 2, 3]
        with pytest.raises(UnknownId):
            await anext(other.listen(sid))
        await runner.cancel(sid)
        with pytest.raises(StreamCancelled):
            await drain(other.listen(sid))  # ended: its end is in the store


async def test_join_waits_for_the_end() -> None:
    """join returns once the stream has ended and its end was delivered."""
    async with Hub() as hub:
        sid = await hub.start(paced(50))
        listener = hub.listen(sid, queue_limit=100)
        await hub.join(sid)
        assert sid not in hub.running
        assert listener.buffered == 50
        assert len(await drain(listener)) == 50
        await hub.join(sid)  # not running: returns at once


async def test_unknown_stream_and_unknown_id() -> None:
    """An unknown stream and an id the stream never issued raise UnknownId."""
    async with Hub() as hub:
        with pytest.raises(UnknownId):
            await drain(hub.listen("nope"))
        with pytest.raises(UnknownId):
            await drain(hub.listen("nope", from_start=True))
        sid = await hub.start(paced(3))
        with pytest.raises(UnknownId):
            await drain(hub.listen(sid, after="9999999999999999"))
        with pytest.raises(ConfigError):
            hub.listen(sid, after="0000000000000001", from_start=True)


async def test_error_reaches_every_subscriber_after_its_events_and_late_joiners() -> None:
    """The upstream's error ends every listener after its events and is kept for late ones."""
    error = ServerError("boom", status=500)
    async with Hub() as hub:
        sid = await hub.start(paced(5, error=error))
        listeners = [hub.listen(sid) for _ in range(3)]
        results = await asyncio.gather(*(outcome(li) for li in listeners))
        late = await outcome(hub.listen(sid, from_start=True))
    for got, exc in [*results, late]:
        assert numbers(got) == [1, 2, 3, 4, 5]
        assert isinstance(exc, ServerError)
        assert exc.status == 500
    raised = [exc for _, exc in results]
    assert len({id(e) for e in raised}) == 3  # each subscriber raises its own copy


async def test_cancel_disposes_the_upstream_and_ends_listeners() -> None:
    """cancel closes the upstream; listeners get StreamCancelled after what they received."""
    closed = asyncio.Event()

    async def endless() -> AsyncIterator[Event]:
        try:
            i = 0
            while True:
                i += 1
                yield TextDelta(text=str(i))
                await asyncio.sleep(0)
        finally:
            closed.set()

    async with Hub() as hub:
        sid = await hub.start(from_aiter(endless))
        listener = hub.listen(sid)
        first = [await anext(listener) for _ in range(5)]
        assert await hub.cancel(sid)
        rest, error = await outcome(listener)
        assert isinstance(error, StreamCancelled)
        assert error.stream_id == sid
        await asyncio.wait_for(closed.wait(), 5)
        got = first + rest
        assert numbers(got) == list(range(1, len(got) + 1))  # what came before the cancel
        assert sid not in hub.running
        assert not await hub.cancel(sid)
        late, error = await outcome(hub.listen(sid, from_start=True))
        assert isinstance(error, StreamCancelled)
        assert late == got


async def test_several_streams_run_side_by_side() -> None:
    """Each stream id has its own upstream, ids and listeners."""
    async with Hub() as hub:
        a = await hub.start(paced(10), stream_id="a")
        b = await hub.start(paced(20), stream_id="b")
        assert set(hub.running) == {"a", "b"}
        got_a, got_b = await asyncio.gather(drain(hub.listen(a)), drain(hub.listen(b)))
        with pytest.raises(ConfigError):
            await hub.start(paced(1), stream_id="a")  # still known to the store
    assert numbers(got_a) == list(range(1, 11))
    assert numbers(got_b) == list(range(1, 21))
    assert got_a[0].id == got_b[0].id  # ids are per stream


async def test_finished_streams_are_forgotten_after_the_window_ages_out() -> None:
    """Once its replay window has aged out, a finished stream is unknown."""
    clock = Clock()
    async with Hub(MemoryStore(max_age=60.0, clock=clock)) as hub:
        sid = await hub.start(paced(3))
        await drain(hub.listen(sid))
        assert numbers(await drain(hub.listen(sid, from_start=True))) == [1, 2, 3]
        clock.now += 61
        with pytest.raises(UnknownId):
            await drain(hub.listen(sid, from_start=True))


async def test_upstream_never_sees_a_subscriber_valve() -> None:
    """The upstream is subscribed under the hub's own valve, not any caller's."""
    seen: list[Valve | None] = []

    def subscribe(observer: abc.ObserverBase[Event], _: Any = None) -> abc.DisposableBase:
        seen.append(current_valve())
        observer.on_next(Finished(reason="stop"))
        observer.on_completed()
        return Disposable()

    outer = Valve()
    outer.shut()
    async with Hub() as hub:
        with valve_scope(outer):
            sid = await hub.start(reactivex.create(subscribe))
        got = await drain(hub.listen(sid, from_start=True))
    assert [s.event for s in got] == [Finished(reason="stop")]
    assert seen[0] is not outer
    assert seen[0] is not None
    assert seen[0].is_open


async def test_synchronous_source_overrunning_max_backlog_fails_clearly() -> None:
    """A source that ignores the valve and overruns max_backlog ends with SlowConsumer."""
    async with Hub(max_backlog=100) as hub:
        source = reactivex.from_iterable([TextDelta(text=str(i)) for i in range(1, 1001)])
        sid = await hub.start(source)
        got, error = await outcome(hub.listen(sid, from_start=True))
    assert numbers(got) == list(range(1, 101))  # what fitted, then the error
    assert isinstance(error, SlowConsumer)
    assert error.limit == 100


async def test_observe_is_an_observable_of_stamped_events() -> None:
    """observe() wraps listen() as a cold Observable."""
    async with Hub() as hub:
        sid = await hub.start(paced(5))
        done: asyncio.Future[list[Stamped]] = asyncio.get_running_loop().create_future()
        got: list[Stamped] = []
        hub.observe(sid, from_start=True).subscribe(
            got.append, done.set_exception, lambda: done.set_result(got)
        )
        assert numbers(await done) == [1, 2, 3, 4, 5]


async def test_aclose_unsubscribes_a_listener() -> None:
    """A closed listener stops receiving and leaves the hub."""
    async with Hub() as hub:
        sid = await hub.start(paced(10))
        listener = hub.listen(sid)
        assert hub.listeners(sid) == 1
        async with listener:
            await anext(listener)
        assert hub.listeners(sid) == 0
        with pytest.raises(StopAsyncIteration):
            await anext(listener)


@pytest.mark.parametrize("kwargs", [{"queue_limit": 0}, {"max_backlog": 0}, {"page_size": 0}])
def test_bad_arguments(kwargs: dict[str, Any]) -> None:
    """The hub's bounds must be positive."""
    with pytest.raises(ConfigError):
        Hub(**kwargs)
