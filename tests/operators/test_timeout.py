"""``first_token_timeout`` and ``idle_timeout`` in virtual time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest
from reactivex import abc, typing
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.marbles import marbles_testing
from reactivex.testing.recorded import Recorded
from reactivex.testing.subscription import Subscription

from rxllm.errors import ConfigError, FirstTokenTimeout, IdleTimeout, StreamInterrupted
from rxllm.events import Finished, Started, TextDelta, Usage
from rxllm.operators import fallback, first_token_timeout, idle_timeout

on_next = cast(Callable[[float, Any], Recorded[Any]], ReactiveTest.on_next)
on_error = cast(Callable[[float, Exception], Recorded[Any]], ReactiveTest.on_error)
on_completed = cast(Callable[[float], Recorded[Any]], ReactiveTest.on_completed)
subscribe = cast(Callable[[float, float], Subscription], ReactiveTest.subscribe)


def err(record: Recorded[Any]) -> Any:
    """The exception of a recorded on_error."""
    notification: Any = record.value
    return notification.exception


def kind(record: Recorded[Any]) -> str:
    """``"N"``, ``"E"`` or ``"C"``: the kind of a recorded notification."""
    notification: Any = record.value
    return str(notification.kind)


S = Started(provider="a", model="m")
A, B, C = TextDelta(text="a"), TextDelta(text="b"), TextDelta(text="c")


class CountingScheduler(TestScheduler):
    """A TestScheduler that counts relative timers."""

    __test__ = False

    def __init__(self) -> None:
        super().__init__()
        self.timers = 0

    def schedule_relative(
        self, duetime: typing.RelativeTime, action: abc.ScheduledAction[Any], state: Any = None
    ) -> abc.DisposableBase:
        self.timers += 1
        return super().schedule_relative(duetime, action, state)


def test_marble_first_token_timeout() -> None:
    """No content within the limit: the stream errors with FirstTokenTimeout at the limit."""
    lookup: dict[str | float, Any] = {"s": S, "a": A}
    with marbles_testing(timespan=1.0) as (start, cold, _hot, exp):
        got = start(cold("-s--------a-|", lookup, None).pipe(first_token_timeout(5.0)))
        assert got[:1] == exp("-s", lookup, None)
        assert got[1].time == 205
        assert isinstance(err(got[1]), FirstTokenTimeout)
        assert err(got[1]).timeout == 5.0


def test_first_token_timeout_disposes_the_upstream() -> None:
    """The source is released at the timeout (its HTTP request would close)."""
    scheduler = TestScheduler()
    source = scheduler.create_cold_observable(on_next(1, S), on_next(9, A), on_completed(10))
    scheduler.start(lambda: source.pipe(first_token_timeout(5.0)))
    assert source.subscriptions == [subscribe(200, 205)]


def test_content_in_time_cancels_the_timer() -> None:
    """Once content arrives the stream runs to the end whatever its length."""
    scheduler = TestScheduler()
    source = scheduler.create_cold_observable(
        on_next(1, S), on_next(4, A), on_next(50, B), on_completed(60)
    )
    results = scheduler.start(lambda: source.pipe(first_token_timeout(5.0)))
    assert results.messages == [
        on_next(201, S),
        on_next(204, A),
        on_next(250, B),
        on_completed(260),
    ]


def test_lifecycle_frames_do_not_stop_the_clock() -> None:
    """Started and Usage are not content: the timeout still fires."""
    scheduler = TestScheduler()
    source = scheduler.create_cold_observable(on_next(1, S), on_next(2, Usage(input_tokens=1)))
    results = scheduler.start(lambda: source.pipe(first_token_timeout(3.0)))
    assert isinstance(err(results.messages[-1]), FirstTokenTimeout)
    assert results.messages[-1].time == 203


def test_fallback_follows_a_first_token_timeout() -> None:
    """A first-token timeout falls over to the alternative, which streams in full."""
    scheduler = TestScheduler()
    slow = scheduler.create_cold_observable(on_next(1, S), on_next(30, A), on_completed(31))
    fast = scheduler.create_cold_observable(on_next(1, B), on_completed(2))
    results = scheduler.start(lambda: slow.pipe(first_token_timeout(5.0), fallback(fast)))
    assert results.messages == [on_next(206, B), on_completed(207)]
    assert slow.subscriptions == [subscribe(200, 205)]


def test_marble_idle_timeout() -> None:
    """A stall after content ends the stream seconds after the last event, with the partial."""
    lookup: dict[str | float, Any] = {"s": S, "a": A, "b": B}
    with marbles_testing(timespan=1.0) as (start, cold, _hot, exp):
        got = start(cold("-s-a-b-----------------c-|", lookup, None).pipe(idle_timeout(5.0)))
        assert got[:3] == exp("-s-a-b", lookup, None)
        last = got[3]
        assert last.time == 210
        error = err(last)
        assert isinstance(error, StreamInterrupted)
        assert isinstance(error.cause, IdleTimeout)
        assert error.partial.text == "ab"
        assert error.partial.provider == "a"


def test_idle_timeout_disposes_the_upstream() -> None:
    """The stalled source is released when the idle timeout fires."""
    scheduler = TestScheduler()
    source = scheduler.create_cold_observable(on_next(1, A), on_next(100, B))
    scheduler.start(lambda: source.pipe(idle_timeout(5.0)))
    assert source.subscriptions == [subscribe(200, 206)]


def test_steady_stream_never_times_out_and_keeps_few_timers() -> None:
    """Events every second under a 10 s idle limit pass; no timer is set per event."""
    scheduler = CountingScheduler()
    messages = [on_next(1 + i, TextDelta(text=str(i))) for i in range(180)]
    messages.append(on_completed(181))
    source = scheduler.create_cold_observable(messages)
    results = scheduler.start(lambda: source.pipe(idle_timeout(10.0)))
    assert results.messages[-1] == on_completed(381)
    assert len(results.messages) == 181
    own = len(messages)  # the cold source schedules one timer per message
    # the timer wakes at most once per (limit - period) = 9 s of a 180 s stream
    assert scheduler.timers - own <= 1 + 180 // 9


def test_idle_timeout_waits_for_the_first_token() -> None:
    """Before content the idle timeout is not armed (first_token_timeout's job)."""
    scheduler = TestScheduler()
    source = scheduler.create_cold_observable(
        on_next(1, S), on_next(50, A), on_next(52, Finished(reason="stop")), on_completed(53)
    )
    results = scheduler.start(lambda: source.pipe(idle_timeout(5.0)))
    assert results.messages[-1] == on_completed(253)


def test_idle_timeout_fires_exactly_after_the_last_event() -> None:
    """The deadline follows the last event: silence of exactly the limit fires."""
    scheduler = TestScheduler()
    source = scheduler.create_cold_observable(
        on_next(1, A), on_next(4, B), on_next(8, C), on_next(30, A)
    )
    results = scheduler.start(lambda: source.pipe(idle_timeout(5.0)))
    assert [m.time for m in results.messages] == [201, 204, 208, 213]
    assert err(results.messages[-1]).partial.text == "abc"


@pytest.mark.parametrize("seconds", [0.0, -1.0])
def test_rejects_non_positive_limits(seconds: float) -> None:
    """A timeout must be positive."""
    with pytest.raises(ConfigError):
        first_token_timeout(seconds)
    with pytest.raises(ConfigError):
        idle_timeout(seconds)
