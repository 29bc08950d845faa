"""``CircuitBreaker`` and ``circuit_breaker``: closed, open, half-open, in virtual time."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, cast

import pytest
import reactivex
from reactivex import Observable
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.marbles import marbles_testing
from reactivex.testing.mockobserver import MockObserver
from reactivex.testing.recorded import Recorded
from reactivex.testing.subscription import Subscription

from rxllm.errors import BadRequest, CircuitOpen, ConfigError, ServerError, StreamInterrupted
from rxllm.events import Started, TextDelta
from rxllm.operators import circuit_breaker
from rxllm.operators._breaker import CircuitBreaker
from rxllm.operators._resil import clock_for
from rxllm.response import Response

on_next = cast(Callable[[float, Any], Recorded[Any]], ReactiveTest.on_next)
on_error = cast(Callable[[float, Exception], Recorded[Any]], ReactiveTest.on_error)
on_completed = cast(Callable[[float], Recorded[Any]], ReactiveTest.on_completed)
subscribe = cast(Callable[[float, float], Subscription], ReactiveTest.subscribe)


def state(breaker: Any) -> str:
    """A breaker's state as a plain string (so checks do not narrow it)."""
    return str(breaker.state)


def err(record: Recorded[Any]) -> Any:
    """The exception of a recorded on_error."""
    notification: Any = record.value
    return notification.exception


def kind(record: Recorded[Any]) -> str:
    """``"N"``, ``"E"`` or ``"C"``: the kind of a recorded notification."""
    notification: Any = record.value
    return str(notification.kind)


A, B = TextDelta(text="a"), TextDelta(text="b")


def run_at(
    scheduler: TestScheduler,
    time: float,
    source: Observable[Any],
    *,
    dispose_at: float | None = None,
) -> MockObserver[Any]:
    """Subscribe ``source`` at virtual ``time`` (and dispose at ``dispose_at``)."""
    observer: MockObserver[Any] = scheduler.create_observer()
    holder: list[Any] = []
    scheduler.schedule_absolute(
        time, lambda *_: holder.append(source.subscribe(observer, scheduler=scheduler))
    )
    if dispose_at is not None:
        scheduler.schedule_absolute(dispose_at, lambda *_: holder[0].dispose())
    return observer


def breaker_on(scheduler: TestScheduler, **kwargs: Any) -> CircuitBreaker:
    """A breaker timed by the test scheduler's virtual clock."""
    return CircuitBreaker("a", clock=clock_for(scheduler), **kwargs)


def test_marble_events_pass_unchanged() -> None:
    """A closed breaker forwards every event at its own time."""
    lookup: dict[str | float, Any] = {"s": Started(provider="a", model="m"), "a": A, "b": B}
    with marbles_testing(timespan=1.0) as (start, cold, _hot, exp):
        breaker = CircuitBreaker("a")
        got = start(cold("-s-a-b-|", lookup, None).pipe(circuit_breaker(breaker)))
        assert got == exp("-s-a-b-|", lookup, None)
        assert state(breaker) == "closed"


def test_trips_after_consecutive_failures_and_makes_no_request() -> None:
    """After failure_threshold failures the next subscription fails with CircuitOpen at once."""
    scheduler = TestScheduler()
    breaker = breaker_on(scheduler, failure_threshold=3, open_for=30.0)
    failing = scheduler.create_cold_observable(on_error(1, ServerError("down", status=503)))
    guarded = failing.pipe(circuit_breaker(breaker))
    for t in (200, 210, 220):
        run_at(scheduler, t, guarded)
    refused = run_at(scheduler, 230, guarded)
    scheduler.advance_to(235)
    assert len(failing.subscriptions) == 3  # the fourth call never reached the source
    assert state(breaker) == "open"
    [message] = refused.messages
    assert message.time == 230
    error = err(message)
    assert isinstance(error, CircuitOpen)
    assert error.provider == "a"
    assert error.retry_after == pytest.approx(30.0 - 9.0)


def test_success_resets_the_consecutive_count() -> None:
    """Failures separated by a completed stream do not trip the breaker."""
    scheduler = TestScheduler()
    breaker = breaker_on(scheduler, failure_threshold=2)
    failing = scheduler.create_cold_observable(on_error(1, ServerError("x", status=500)))
    working = scheduler.create_cold_observable(on_next(1, A), on_completed(2))
    run_at(scheduler, 200, failing.pipe(circuit_breaker(breaker)))
    run_at(scheduler, 210, working.pipe(circuit_breaker(breaker)))
    run_at(scheduler, 220, failing.pipe(circuit_breaker(breaker)))
    scheduler.advance_to(300)
    assert state(breaker) == "closed"


def test_half_open_lets_exactly_one_probe_through_and_closes_on_success() -> None:
    """After open_for one probe reaches the source, a concurrent call is refused, success closes."""
    scheduler = TestScheduler()
    changes: list[tuple[str, str]] = []
    breaker = breaker_on(scheduler, failure_threshold=1, open_for=10.0, half_open_probes=1)
    breaker.add_listener(lambda _b, old, new: changes.append((old, new)))
    failing = scheduler.create_cold_observable(on_error(1, ServerError("x", status=500)))
    slow_ok = scheduler.create_cold_observable(on_next(5, A), on_completed(10))
    run_at(scheduler, 200, failing.pipe(circuit_breaker(breaker)))  # trips at 201
    early = run_at(scheduler, 205, slow_ok.pipe(circuit_breaker(breaker)))  # still open
    probe = run_at(scheduler, 212, slow_ok.pipe(circuit_breaker(breaker)))  # the probe
    second = run_at(scheduler, 214, slow_ok.pipe(circuit_breaker(breaker)))  # probe busy
    after = run_at(scheduler, 230, slow_ok.pipe(circuit_breaker(breaker)))  # closed again
    scheduler.advance_to(300)
    assert isinstance(err(early.messages[0]), CircuitOpen)
    assert probe.messages == [on_next(217, A), on_completed(222)]
    assert isinstance(err(second.messages[0]), CircuitOpen)
    assert after.messages == [on_next(235, A), on_completed(240)]
    assert slow_ok.subscriptions == [subscribe(212, 222), subscribe(230, 240)]
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_failed_probe_reopens() -> None:
    """A probe that fails opens the breaker again for another open_for."""
    scheduler = TestScheduler()
    breaker = breaker_on(scheduler, failure_threshold=1, open_for=10.0)
    failing = scheduler.create_cold_observable(on_error(1, ServerError("x", status=500)))
    run_at(scheduler, 200, failing.pipe(circuit_breaker(breaker)))
    run_at(scheduler, 215, failing.pipe(circuit_breaker(breaker)))  # probe, fails at 216
    refused = run_at(scheduler, 220, failing.pipe(circuit_breaker(breaker)))
    scheduler.advance_to(220)
    assert len(failing.subscriptions) == 2
    assert isinstance(err(refused.messages[0]), CircuitOpen)
    assert state(breaker) == "open"
    assert breaker.retry_after() == pytest.approx(6.0)


def test_mid_stream_interruption_is_a_failure() -> None:
    """A stream that fails after content counts against the provider."""
    scheduler = TestScheduler()
    breaker = breaker_on(scheduler, failure_threshold=1)
    cut = StreamInterrupted("cut", partial=Response(text="a"))
    source = scheduler.create_cold_observable(on_next(1, A), on_error(2, cut))
    run_at(scheduler, 200, source.pipe(circuit_breaker(breaker)))
    scheduler.advance_to(210)
    assert state(breaker) == "open"


def test_cancellation_is_neither_success_nor_failure() -> None:
    """A consumer that disposes neither trips nor resets the breaker, and frees its probe."""
    scheduler = TestScheduler()
    breaker = breaker_on(scheduler, failure_threshold=2, open_for=10.0)
    failing = scheduler.create_cold_observable(on_error(1, ServerError("x", status=500)))
    endless = scheduler.create_cold_observable(on_next(1, A))
    run_at(scheduler, 200, failing.pipe(circuit_breaker(breaker)))  # 1 failure
    run_at(scheduler, 210, endless.pipe(circuit_breaker(breaker)), dispose_at=215)  # cancelled
    run_at(scheduler, 220, failing.pipe(circuit_breaker(breaker)))  # 2nd failure: trips
    # half-open at 231: a probe that is cancelled frees the slot for the next call
    run_at(scheduler, 232, endless.pipe(circuit_breaker(breaker)), dispose_at=233)
    probe = run_at(scheduler, 234, endless.pipe(circuit_breaker(breaker)))
    scheduler.advance_to(300)
    assert probe.messages == [on_next(235, A)]
    assert state(breaker) == "half_open"


def test_bad_request_does_not_count() -> None:
    """A 400 is the caller's fault: it is not recorded as a provider failure."""
    scheduler = TestScheduler()
    breaker = breaker_on(scheduler, failure_threshold=1)
    source = scheduler.create_cold_observable(on_error(1, BadRequest("bad", status=400)))
    run_at(scheduler, 200, source.pipe(circuit_breaker(breaker)))
    scheduler.advance_to(300)
    assert state(breaker) == "closed"


def test_failure_rate_over_a_sliding_window() -> None:
    """With a rate, the breaker trips once min_calls are in the window and the rate is met."""
    scheduler = TestScheduler()
    breaker = breaker_on(
        scheduler, failure_threshold=None, failure_rate=0.5, window=10.0, min_calls=4
    )
    bad = scheduler.create_cold_observable(on_error(0.1, ServerError("x", status=500)))
    good = scheduler.create_cold_observable(on_completed(0.1))
    # old calls fall out of the window: 3 failures long ago do not count
    for t in (200, 201, 202):
        run_at(scheduler, t, bad.pipe(circuit_breaker(breaker)))
    for t, src in ((230, good), (231, bad), (232, good)):
        run_at(scheduler, t, src.pipe(circuit_breaker(breaker)))
    scheduler.advance_to(233)
    assert state(breaker) == "closed"  # 1 of 3 failed, and fewer than min_calls
    run_at(scheduler, 234, bad.pipe(circuit_breaker(breaker)))
    scheduler.advance_to(235)
    assert state(breaker) == "open"  # 2 of 4 failed within 10 s


def test_raising_listener_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A listener that raises is logged on the rxllm logger; the stream is unaffected."""

    def bad(*_: Any) -> None:
        raise RuntimeError("listener bug")

    breaker = CircuitBreaker("a", failure_threshold=1)
    breaker.add_listener(bad)
    errors: list[Exception] = []
    with caplog.at_level(logging.ERROR, logger="rxllm"):
        reactivex.throw(ServerError("x", status=500)).pipe(circuit_breaker(breaker)).subscribe(
            on_error=errors.append
        )
    assert [type(e) for e in errors] == [ServerError]
    assert "listener" in caplog.text
    breaker.remove_listener(bad)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failure_threshold": None},
        {"failure_threshold": 0},
        {"failure_rate": 1.5},
        {"window": 0.0},
        {"half_open_probes": 0},
    ],
)
def test_rejects_impossible_settings(kwargs: dict[str, Any]) -> None:
    """Settings that make no sense raise ConfigError."""
    with pytest.raises(ConfigError):
        CircuitBreaker("a", **kwargs)
