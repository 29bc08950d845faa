"""``window``: batches by count, time and bytes, in virtual time."""

from __future__ import annotations

from typing import Any

import pytest
import reactivex
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.marbles import marbles_testing

from rxllm import operators as ops
from rxllm.errors import ConfigError
from rxllm.events import Finished, TextDelta, ToolCallDelta, Usage
from rxllm.operators._window import default_size


def test_count_batches_and_flushes_the_rest_at_completion() -> None:
    """A batch leaves when it holds count items; the remainder leaves at completion."""
    with marbles_testing() as (start, cold, _hot, exp):
        source = cold("-a-b-c-d-e-|", None, None)
        expected = exp("-----x-----(y,|)", {"x": ["a", "b", "c"], "y": ["d", "e"]}, None)
        assert start(source.pipe(ops.window(count=3))) == expected


def test_seconds_are_timed_from_the_batch_first_item() -> None:
    """A time window opens with its first item and closes seconds later, never empty."""
    with marbles_testing() as (start, cold, _hot, exp):
        source = cold("-a-b--------c---|", None, None)
        expected = exp("------x---------(y,|)", {"x": ["a", "b"], "y": ["c"]}, None)
        # a at 1 opens a 5 s window (emitted at 6); c at 12 opens the next, cut by completion.
        assert start(source.pipe(ops.window(seconds=5))) == expected


def test_seconds_use_the_explicit_scheduler() -> None:
    """An explicit scheduler times the window (here the same virtual clock, passed in)."""
    scheduler = TestScheduler()
    source = scheduler.create_cold_observable(
        ReactiveTest.on_next(10, "a"), ReactiveTest.on_completed(100)
    )
    results = scheduler.start(lambda: source.pipe(ops.window(seconds=30, scheduler=scheduler)))
    assert results.messages == [
        ReactiveTest.on_next(240, ["a"]),
        ReactiveTest.on_completed(300),
    ]


def test_count_before_timer_cancels_the_timer() -> None:
    """A batch cut by count cancels its timer, so the next batch gets its own full window."""
    with marbles_testing() as (start, cold, _hot, exp):
        source = cold("-a-b--c-----------|", None, None)
        # [a, b] by count at 3; c at 6 opens a new 5 s window, emitted at 11 (not at 6).
        expected = exp("---x-------y------|", {"x": ["a", "b"], "y": ["c"]}, None)
        assert start(source.pipe(ops.window(count=2, seconds=5))) == expected


def test_bytes_bound_counts_utf8_text() -> None:
    """A batch leaves once its items' UTF-8 size reaches the bytes bound."""
    with marbles_testing() as (start, cold, _hot, exp):
        lookup: dict[str | float, Any] = {"a": "ab", "b": "é", "c": "xyz", "d": "q"}
        source = cold("-a-b-c-d-|", lookup, None)
        # "ab" (2) + "é" (2) = 4 -> batch; "xyz" (3) + "q" (1) = 4 -> batch.
        expected = exp("---x---y-|", {"x": ["ab", "é"], "y": ["xyz", "q"]}, None)
        assert start(source.pipe(ops.window(bytes=4))) == expected


def test_an_item_larger_than_bytes_is_a_batch_of_its_own() -> None:
    """One oversized item is emitted alone at once."""
    with marbles_testing() as (start, cold, _hot, exp):
        source = cold("-a-|", {"a": "x" * 100}, None)
        expected = exp("-x-|", {"x": ["x" * 100]}, None)
        assert start(source.pipe(ops.window(bytes=10))) == expected


def test_error_flushes_the_batch_in_progress_first() -> None:
    """An error emits the open batch first, then passes through: nothing is lost."""
    error = ValueError("boom")
    with marbles_testing() as (start, cold, _hot, exp):
        source = cold("-a-b-#", None, error)
        expected = exp("-----(x,#)", {"x": ["a", "b"]}, error)
        assert start(source.pipe(ops.window(count=10))) == expected


def test_no_empty_batch_at_completion() -> None:
    """Completion with nothing pending emits no batch."""
    with marbles_testing() as (start, cold, _hot, exp):
        source = cold("-a-b-|", None, None)
        expected = exp("---x-|", {"x": ["a", "b"]}, None)
        assert start(source.pipe(ops.window(count=2, seconds=100))) == expected


def test_dispose_cancels_the_timer() -> None:
    """Disposing the subscription cancels the open batch's timer: nothing comes after."""
    scheduler = TestScheduler()
    source = scheduler.create_hot_observable(ReactiveTest.on_next(210, "a"))
    results = scheduler.start(
        lambda: source.pipe(ops.window(seconds=100, scheduler=scheduler)), disposed=250
    )
    assert results.messages == []


def test_stats_count_items_and_batches() -> None:
    """Stats: received items, emitted batches, merged = items beyond each batch's first."""
    stats = ops.FlowStats()
    out: list[list[int]] = []
    reactivex.from_iterable(range(7)).pipe(ops.window(count=3, stats=stats)).subscribe(out.append)
    assert out == [[0, 1, 2], [3, 4, 5], [6]]
    assert (stats.received, stats.emitted, stats.merged) == (7, 3, 4)
    assert stats.received == stats.emitted + stats.merged + stats.dropped


def test_custom_size_of() -> None:
    """size_of replaces the default measure."""
    out: list[list[int]] = []
    reactivex.from_iterable([5, 5, 1, 9]).pipe(ops.window(bytes=10, size_of=lambda n: n)).subscribe(
        out.append
    )
    assert out == [[5, 5], [1, 9]]


def test_default_size_of_events() -> None:
    """Deltas count their text's UTF-8 bytes; other events their JSON without raw."""
    assert default_size(TextDelta(text="héllo", raw={"huge": "x" * 1000})) == 6
    assert default_size(ToolCallDelta(index=0, arguments='{"a":1}')) == 7
    assert default_size(b"abc") == 3
    finished = default_size(Finished(reason="stop", raw="x" * 1000))
    assert 0 < finished < 100
    assert default_size(Usage(input_tokens=3)) > 0
    assert default_size({"k": [1, 2]}) == len(b'{"k":[1,2]}')
    assert default_size(object()) > 0  # not JSON: falls back to repr


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"count": 0}, {"seconds": 0}, {"seconds": -1.0}, {"bytes": 0}],
)
def test_bad_arguments(kwargs: dict[str, float]) -> None:
    """window needs at least one positive bound."""
    with pytest.raises(ConfigError):
        ops.window(**kwargs)  # type: ignore[arg-type]
