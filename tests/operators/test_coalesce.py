"""``coalesce``: unchanged while the sink keeps up, merged while it lags, never lossy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import reactivex
from reactivex import Observable, abc
from reactivex.subject import Subject

from rxllm import operators as ops
from rxllm._valve import Valve, current_valve, valve_scope
from rxllm.aio import from_aiter, to_aiter
from rxllm.errors import ConfigError
from rxllm.events import Event, Finished, ReasoningDelta, TextDelta, ToolCall, Usage


class Sink:
    """A recording subscriber behind a hand-driven valve."""

    def __init__(self, source: Observable[Any], valve: Valve | None = None) -> None:
        self.valve = valve
        self.items: list[Any] = []
        self.end: list[Any] = []
        with valve_scope(valve):
            self.subscription = source.subscribe(
                self.items.append, self.end.append, lambda: self.end.append("completed")
            )


def texts(items: list[Any]) -> list[str]:
    return [i.text if isinstance(i, TextDelta | ReasoningDelta) else repr(i) for i in items]


def test_without_a_sink_valve_items_pass_unchanged() -> None:
    """With no demand-aware sink the operator is a counting pass-through."""
    stats = ops.FlowStats()
    events = [TextDelta(text="a"), TextDelta(text="b")]
    sink = Sink(reactivex.from_iterable(events).pipe(ops.coalesce(stats=stats)))
    assert sink.items == events
    assert all(a is b for a, b in zip(sink.items, events, strict=True))
    assert (stats.received, stats.emitted, stats.merged) == (2, 2, 0)


def test_open_sink_gets_the_very_same_objects() -> None:
    """While the sink's valve is open every delta passes at once, as the same object."""
    subject: Subject[Event] = Subject()
    sink = Sink(subject.pipe(ops.coalesce()), Valve())
    events = [TextDelta(text=c, raw={"i": i}) for i, c in enumerate("hello")]
    for ev in events:
        subject.on_next(ev)
        assert sink.items[-1] is ev  # at once, not later
    subject.on_completed()
    assert sink.end == ["completed"]


def test_shut_sink_merges_consecutive_deltas_and_keeps_other_events_in_place() -> None:
    """While the sink lags, text runs merge; a non-text event splits runs and keeps its place."""
    subject: Subject[Event] = Subject()
    valve = Valve()
    stats = ops.FlowStats()
    sink = Sink(subject.pipe(ops.coalesce(stats=stats)), valve)
    subject.on_next(TextDelta(text="A"))
    valve.shut()
    usage = Usage(output_tokens=3)
    script: list[Event] = [TextDelta(text="b"), TextDelta(text="c"), usage, TextDelta(text="d")]
    for ev in script:
        subject.on_next(ev)
    subject.on_next(TextDelta(text="e"))
    assert texts(sink.items) == ["A"]  # nothing handed over while shut
    valve.open()
    assert texts(sink.items) == ["A", "bc", repr(usage), "de"]
    assert sink.items[2] is usage
    assert (stats.received, stats.emitted, stats.merged) == (6, 4, 2)


def test_reasoning_and_text_runs_never_mix() -> None:
    """Reasoning deltas merge with reasoning, text with text; a signature delta stands alone."""
    subject: Subject[Event] = Subject()
    valve = Valve()
    sink = Sink(subject.pipe(ops.coalesce()), valve)
    valve.shut()
    signature = ReasoningDelta(text="", signature="sig")
    script: list[Event] = [
        ReasoningDelta(text="th"),
        ReasoningDelta(text="ink"),
        signature,
        TextDelta(text="an"),
        TextDelta(text="swer"),
    ]
    for ev in script:
        subject.on_next(ev)
    valve.open()
    assert sink.items == [ReasoningDelta(text="think"), signature, TextDelta(text="answer")]


def test_a_lone_pending_delta_is_handed_over_as_itself() -> None:
    """A delta that waited alone is not rebuilt: it keeps its raw payload."""
    subject: Subject[Event] = Subject()
    valve = Valve()
    sink = Sink(subject.pipe(ops.coalesce()), valve)
    valve.shut()
    delta = TextDelta(text="x", raw={"id": 1})
    subject.on_next(delta)
    valve.open()
    assert sink.items[0] is delta


def test_max_chars_starts_a_new_run() -> None:
    """A merged delta never exceeds max_chars; the run continues in a new delta."""
    subject: Subject[Event] = Subject()
    valve = Valve()
    sink = Sink(subject.pipe(ops.coalesce(max_chars=4)), valve)
    valve.shut()
    for c in "abcdefghij":
        subject.on_next(TextDelta(text=c))
    valve.open()
    assert texts(sink.items) == ["abcd", "efgh", "ij"]


def test_hand_over_stops_when_the_sink_shuts_again() -> None:
    """Pending items go out only while the sink is open; the rest waits for its next open."""
    subject: Subject[Event] = Subject()
    valve = Valve()
    received: list[Any] = []

    def on_next(item: Any) -> None:
        received.append(item)
        valve.shut()  # a window of one: full after each item

    with valve_scope(valve):
        subject.pipe(ops.coalesce()).subscribe(on_next)
    valve.shut()
    a, u, b = TextDelta(text="a"), Usage(output_tokens=1), TextDelta(text="b")
    for ev in (a, u, b):
        subject.on_next(ev)
    valve.open()
    assert received == [a]
    valve.open()
    assert received == [a, u]
    subject.on_next(TextDelta(text="c"))
    valve.open()
    assert received == [a, u, TextDelta(text="bc")]


def test_completion_and_error_wait_behind_pending_items() -> None:
    """The end never overtakes a pending item and is delivered once they are handed over."""
    for error in (None, ValueError("boom")):
        subject: Subject[Event] = Subject()
        valve = Valve()
        sink = Sink(subject.pipe(ops.coalesce()), valve)
        valve.shut()
        subject.on_next(TextDelta(text="a"))
        subject.on_next(Finished(reason="stop"))
        if error is None:
            subject.on_completed()
        else:
            subject.on_error(error)
        assert sink.items == []
        assert sink.end == []
        valve.open()
        assert sink.items == [TextDelta(text="a"), Finished(reason="stop")]
        assert sink.end == ["completed" if error is None else error]


def test_full_pending_buffer_pauses_the_source_and_resumes_it() -> None:
    """At max_pending unmergeable items the source's valve shuts; after hand-over it reopens."""
    seen: list[Valve | None] = []
    subject: Subject[Event] = Subject()

    def subscribe(observer: abc.ObserverBase[Event], _: Any = None) -> abc.DisposableBase:
        seen.append(current_valve())
        return subject.subscribe(observer)

    valve = Valve()
    stats = ops.FlowStats()
    sink = Sink(reactivex.create(subscribe).pipe(ops.coalesce(max_pending=4, stats=stats)), valve)
    (own,) = seen
    assert own is not None
    assert own is not valve
    valve.shut()
    for i in range(3):
        subject.on_next(ToolCall(index=i, id=None, name="f", arguments={}))
    assert own.pauses == 0  # the source keeps reading while the sink lags
    subject.on_next(ToolCall(index=3, id=None, name="f", arguments={}))
    assert not own.is_open
    assert own.pauses == stats.pauses == 1
    valve.open()
    assert own.is_open
    assert [ev.index for ev in sink.items] == [0, 1, 2, 3]


def test_dispose_drops_pending_and_stops_watching() -> None:
    """After disposal nothing reaches the subscriber, even when the sink opens again."""
    subject: Subject[Event] = Subject()
    valve = Valve()
    sink = Sink(subject.pipe(ops.coalesce()), valve)
    valve.shut()
    subject.on_next(TextDelta(text="a"))
    sink.subscription.dispose()
    valve.open()
    assert sink.items == []
    assert not subject.observers


def test_nested_gates_hand_over_in_order() -> None:
    """Two coalesce operators in a row hand items down in order when the sink opens."""
    subject: Subject[Event] = Subject()
    valve = Valve()
    sink = Sink(subject.pipe(ops.coalesce(max_pending=2), ops.coalesce(max_pending=2)), valve)
    valve.shut()
    for i in range(6):
        subject.on_next(ToolCall(index=i, id=None, name="f", arguments={}))
        subject.on_next(TextDelta(text=str(i)))
    valve.open()
    assert "".join(texts([i for i in sink.items if isinstance(i, TextDelta)])) == "012345"
    assert [i.index for i in sink.items if isinstance(i, ToolCall)] == list(range(6))


@pytest.mark.parametrize("kwargs", [{"max_chars": 0}, {"max_pending": 0}])
def test_bad_arguments(kwargs: dict[str, Any]) -> None:
    """coalesce's bounds must be positive."""
    with pytest.raises(ConfigError):
        ops.coalesce(**kwargs)


# --- with a real to_aiter sink --------------------------------------------------------------


def _script(n: int) -> list[Event]:
    events: list[Event] = []
    for i in range(n):
        events.append(TextDelta(text=f"w{i} "))
        if i % 25 == 24:
            events.append(ToolCall(index=i, id=None, name="f", arguments={"i": i}))
    events.append(Finished(reason="stop"))
    return events


def _producer(events: list[Event]) -> Observable[Event]:
    async def gen() -> AsyncIterator[Event]:
        for ev in events:
            yield ev
            await asyncio.sleep(0)  # one event per loop iteration, like socket reads

    return from_aiter(gen)


def _segments(items: list[Event]) -> list[object]:
    """Text joined between non-text events, which are kept as themselves."""
    out: list[object] = []
    run: list[str] = []
    for ev in items:
        if isinstance(ev, TextDelta):
            run.append(ev.text)
        else:
            if run:
                out.append("".join(run))
                run = []
            out.append(ev)
    if run:
        out.append("".join(run))
    return out


async def test_to_aiter_consumer_that_keeps_up_gets_everything_unchanged() -> None:
    """A consumer that keeps up receives every event, as the very same objects."""
    events = _script(200)
    stats = ops.FlowStats()
    got = [ev async for ev in to_aiter(_producer(events).pipe(ops.coalesce(stats=stats)))]
    assert len(got) == len(events)
    assert all(a is b for a, b in zip(got, events, strict=True))
    assert stats.merged == 0


async def test_to_aiter_slow_consumer_gets_merged_chunks_nothing_lost_order_kept() -> None:
    """A lagging consumer gets fewer, bigger deltas; text, other events and order are intact."""
    events = _script(400)
    stats = ops.FlowStats()
    got: list[Event] = []
    async for ev in to_aiter(_producer(events).pipe(ops.coalesce(stats=stats)), window=1):
        got.append(ev)
        for _ in range(4):  # the consumer is ~4x slower than the producer
            await asyncio.sleep(0)
    assert _segments(got) == _segments(events)  # nothing lost, no run spans another event
    assert len(got) < len(events) // 2
    assert stats.merged > 0
    assert stats.received == len(events) == stats.emitted + stats.merged
    assert got[-1] == Finished(reason="stop")


async def test_to_aiter_stalled_consumer_pauses_the_source_at_the_bound() -> None:
    """With a stalled consumer the source stops at the operator's bound, then resumes: lossless."""
    produced = 0

    async def gen() -> AsyncIterator[ToolCall]:
        nonlocal produced
        for i in range(300):
            produced += 1
            yield ToolCall(index=i, id=None, name="f", arguments={})
            await asyncio.sleep(0)

    iterator = to_aiter(from_aiter(gen).pipe(ops.coalesce(max_pending=16)), window=4)
    first = await anext(iterator)
    for _ in range(200):  # the consumer stalls; the producer runs until the bounds are full
        await asyncio.sleep(0)
    assert produced <= 1 + 4 + 16 + 2  # taken + sink window + pending (+ one in flight)
    rest = [ev async for ev in iterator]
    assert [first.index, *(ev.index for ev in rest)] == list(range(300))
