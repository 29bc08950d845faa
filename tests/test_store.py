"""``MemoryStore``: ids, the bounded replay window, explicit errors, forgetting."""

from __future__ import annotations

import pytest

import rxllm.store as store_module
from rxllm.errors import ConfigError, ReplayWindowExceeded, UnknownId
from rxllm.events import Event, TextDelta
from rxllm.store import MemoryStore, Store


class Clock:
    """A hand-moved monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def deltas(*texts: str) -> list[Event]:
    return [TextDelta(text=t) for t in texts]


def test_public_face() -> None:
    """rxllm.store exports a sorted __all__ and MemoryStore satisfies the Store protocol."""
    assert store_module.__all__ == sorted(store_module.__all__)
    assert isinstance(MemoryStore(), Store)


async def test_ids_are_fixed_width_and_ordered_as_strings() -> None:
    """Ids grow monotonically and their string order is the append order, past 9 and 99."""
    store = MemoryStore()
    await store.create("s")
    ids: list[str] = []
    for i in range(120):
        ids.extend(s.id for s in await store.append("s", deltas(str(i))))
    assert ids == sorted(ids)
    assert len(set(ids)) == 120
    assert len({len(i) for i in ids}) == 1
    assert int(ids[0]) == 1


async def test_read_after_an_id_gives_exactly_the_rest_in_pages() -> None:
    """read(after=id) returns the events after id, in order, limit at a time."""
    store = MemoryStore()
    await store.create("s")
    stamped = await store.append("s", deltas(*"abcdef"))
    page = await store.read("s", after=stamped[1].id, limit=3)
    assert [s.event for s in page.items] == deltas("c", "d", "e")
    assert not page.ended
    page = await store.read("s", after=page.items[-1].id, limit=3)
    assert [s.event for s in page.items] == deltas("f")
    assert (await store.read("s")).items == stamped  # after=None: from the oldest kept
    assert (await store.read("s", after=stamped[-1].id)).items == []


async def test_count_trimming_raises_replay_window_exceeded() -> None:
    """An id trimmed by count gives ReplayWindowExceeded with the oldest kept id."""
    store = MemoryStore(max_events=3)
    await store.create("s")
    stamped = await store.append("s", deltas(*"abcde"))
    with pytest.raises(ReplayWindowExceeded) as info:
        await store.read("s", after=stamped[0].id)
    assert info.value.requested == stamped[0].id
    assert info.value.oldest == stamped[2].id
    # The id right before the oldest kept one still resumes with nothing missing.
    page = await store.read("s", after=stamped[1].id)
    assert [s.event for s in page.items] == deltas("c", "d", "e")


async def test_a_batch_bigger_than_the_window_keeps_its_newest() -> None:
    """One large append keeps only its newest max_events events."""
    store = MemoryStore(max_events=4)
    await store.create("s")
    stamped = await store.append("s", deltas(*"abcdefghij"))
    assert (await store.read("s")).items == stamped[-4:]


async def test_age_trimming() -> None:
    """Events older than max_age leave the window; resuming before them is an explicit error."""
    clock = Clock()
    store = MemoryStore(max_age=10.0, clock=clock)
    await store.create("s")
    old = await store.append("s", deltas("a"))
    clock.now += 6
    new = await store.append("s", deltas("b"))
    clock.now += 6
    assert (await store.read("s")).items == new
    with pytest.raises(ReplayWindowExceeded):
        await store.read("s", after="0" * 16)
    assert (await store.read("s", after=old[0].id)).items == new


async def test_unknown_stream_and_unknown_ids() -> None:
    """An unknown stream, a future id and a malformed id each raise UnknownId."""
    store = MemoryStore()
    with pytest.raises(UnknownId) as info:
        await store.read("nope")
    assert (info.value.stream_id, info.value.event_id) == ("nope", None)
    await store.create("s")
    await store.append("s", deltas("a"))
    for bad in ("0000000000000002", "12", "abc", "000000000000000x"):
        with pytest.raises(UnknownId) as info:
            await store.read("s", after=bad)
        assert info.value.event_id == bad
    assert isinstance(info.value, LookupError)


async def test_end_is_seen_with_the_last_page_only() -> None:
    """close records the end (with its error); only the page holding the last event says so."""
    store = MemoryStore()
    await store.create("s")
    await store.append("s", deltas(*"abc"))
    error = ValueError("boom")
    await store.close("s", error)
    first = await store.read("s", limit=2)
    assert not first.ended
    assert first.error is None
    last = await store.read("s", after=first.items[-1].id, limit=2)
    assert last.ended
    assert last.error is error
    info = await store.info("s")
    assert info.ended
    assert info.error is error
    assert (info.first_id, info.last_id) == ("0000000000000001", "0000000000000003")
    with pytest.raises(ConfigError):
        await store.append("s", deltas("d"))


async def test_ended_streams_are_forgotten_after_max_age_running_ones_are_not() -> None:
    """An ended stream is forgotten max_age after its end; a running one stays known."""
    clock = Clock()
    store = MemoryStore(max_age=5.0, clock=clock)
    await store.create("done")
    await store.create("running")
    await store.close("done")
    clock.now += 4
    assert (await store.info("done")).ended
    clock.now += 2
    with pytest.raises(UnknownId):
        await store.info("done")
    assert not (await store.info("running")).ended
    assert len(store) == 1


async def test_create_rejects_a_known_stream() -> None:
    """A stream id cannot be reused while the store knows it."""
    store = MemoryStore()
    await store.create("s")
    with pytest.raises(ConfigError):
        await store.create("s")
    await store.forget("s")
    await store.create("s")


async def test_max_streams_evicts_the_oldest_ended_stream_or_refuses() -> None:
    """At max_streams, create forgets the first-ended stream; with none ended it refuses."""
    store = MemoryStore(max_streams=2)
    await store.create("a")
    await store.create("b")
    with pytest.raises(ConfigError):
        await store.create("c")
    await store.close("b")
    await store.create("c")
    with pytest.raises(UnknownId):
        await store.info("b")
    assert len(store) == 2


@pytest.mark.parametrize("kwargs", [{"max_events": 0}, {"max_age": 0.0}, {"max_streams": 0}])
def test_bad_arguments(kwargs: dict[str, float]) -> None:
    """Bounds must be positive."""
    with pytest.raises(ConfigError):
        MemoryStore(**kwargs)  # type: ignore[arg-type]
