"""``latest`` and ``drop_oldest``: lossy only while the sink lags, never the end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import reactivex
from reactivex.subject import Subject

from rxllm import operators as ops
from rxllm._valve import Valve, valve_scope
from rxllm.aio import from_aiter, to_aiter
from rxllm.errors import ConfigError
from rxllm.events import Event, Finished, TextDelta, Usage


class Sink:
    """A recording subscriber behind a hand-driven valve."""

    def __init__(self, source: reactivex.Observable[Any], valve: Valve) -> None:
        self.items: list[Any] = []
        self.end: list[Any] = []
        with valve_scope(valve):
            self.subscription = source.subscribe(
                self.items.append, self.end.append, lambda: self.end.append("completed")
            )


def test_latest_passes_everything_while_the_sink_keeps_up() -> None:
    """Nothing is dropped while the sink's valve is open."""
    stats = ops.FlowStats()
    subject: Subject[int] = Subject()
    sink = Sink(subject.pipe(ops.latest(stats=stats)), Valve())
    for i in range(10):
        subject.on_next(i)
    assert sink.items == list(range(10))
    assert stats.dropped == 0


def test_latest_keeps_only_the_newest_while_the_sink_lags() -> None:
    """While shut, each item replaces the waiting one; the newest goes out on reopen."""
    stats = ops.FlowStats()
    valve = Valve()
    subject: Subject[int] = Subject()
    sink = Sink(subject.pipe(ops.latest(stats=stats)), valve)
    subject.on_next(0)
    valve.shut()
    for i in range(1, 6):
        subject.on_next(i)
    valve.open()
    subject.on_next(6)
    assert sink.items == [0, 5, 6]
    assert stats.dropped == 4
    assert stats.received == stats.emitted + stats.dropped


def test_drop_oldest_keeps_the_newest_limit() -> None:
    """While shut, the buffer keeps the newest limit items, dropping the oldest first."""
    stats = ops.FlowStats()
    valve = Valve()
    subject: Subject[int] = Subject()
    sink = Sink(subject.pipe(ops.drop_oldest(3, stats=stats)), valve)
    valve.shut()
    for i in range(10):
        subject.on_next(i)
    valve.open()
    assert sink.items == [7, 8, 9]
    assert stats.dropped == 7


def test_finished_and_completion_are_never_dropped() -> None:
    """Finished survives any number of later items; completion waits behind it."""
    stats = ops.FlowStats()
    valve = Valve()
    subject: Subject[Event] = Subject()
    sink = Sink(subject.pipe(ops.latest(stats=stats)), valve)
    valve.shut()
    finished = Finished(reason="stop")
    subject.on_next(TextDelta(text="a"))
    subject.on_next(finished)
    subject.on_next(Usage(output_tokens=2))
    subject.on_next(Usage(output_tokens=3))
    subject.on_completed()
    assert sink.end == []
    valve.open()
    assert sink.items == [finished, Usage(output_tokens=3)]
    assert sink.end == ["completed"]
    assert stats.dropped == 2


def test_error_is_never_dropped() -> None:
    """An error is delivered after the newest item, once the sink has room."""
    valve = Valve()
    subject: Subject[int] = Subject()
    sink = Sink(subject.pipe(ops.latest()), valve)
    valve.shut()
    subject.on_next(1)
    subject.on_next(2)
    error = ValueError("boom")
    subject.on_error(error)
    valve.open()
    assert sink.items == [2]
    assert sink.end == [error]


def test_keep_protects_chosen_items() -> None:
    """A keep predicate protects more than Finished."""
    valve = Valve()
    subject: Subject[int] = Subject()

    def tens(n: int) -> bool:
        return n % 10 == 0

    sink = Sink(subject.pipe(ops.drop_oldest(1, keep=tens)), valve)
    valve.shut()
    for i in range(1, 25):
        subject.on_next(i)
    valve.open()
    assert sink.items == [10, 20, 24]


def test_protected_items_pause_the_source_at_max_kept() -> None:
    """Protected items are bounded too: at max_kept the operator pauses its source."""
    stats = ops.FlowStats()
    valve = Valve()
    subject: Subject[Event] = Subject()
    sink = Sink(subject.pipe(ops.latest(max_kept=2, stats=stats)), valve)
    valve.shut()
    subject.on_next(Finished(reason="stop"))
    subject.on_next(Finished(reason="length"))
    assert stats.pauses == 1
    valve.open()
    assert [ev.reason for ev in sink.items] == ["stop", "length"]


@pytest.mark.parametrize("kwargs", [{"limit": 0}, {"limit": 1, "max_kept": 0}])
def test_bad_arguments(kwargs: dict[str, Any]) -> None:
    """Bounds must be positive."""
    with pytest.raises(ConfigError):
        ops.drop_oldest(**kwargs)


async def test_latest_with_a_slow_to_aiter_consumer() -> None:
    """A slow consumer sees an increasing subsequence ending with the last item and Finished."""
    stats = ops.FlowStats()

    async def gen() -> AsyncIterator[Event]:
        for i in range(200):
            yield Usage(output_tokens=i)
            await asyncio.sleep(0)
        yield Finished(reason="stop")

    got: list[Event] = []
    async for ev in to_aiter(from_aiter(gen).pipe(ops.latest(stats=stats)), window=1):
        got.append(ev)
        for _ in range(5):
            await asyncio.sleep(0)
    counts = [ev.output_tokens or 0 for ev in got if isinstance(ev, Usage)]
    assert counts == sorted(counts)
    assert counts[-1] == 199
    assert got[-1] == Finished(reason="stop")
    assert stats.dropped > 100
    assert stats.received == 201 == stats.emitted + stats.dropped
