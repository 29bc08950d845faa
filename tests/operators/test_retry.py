"""``retry``: resubscribe with backoff before the first token only, in virtual time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest
import reactivex
from reactivex import Observable, abc
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.marbles import marbles_testing
from reactivex.testing.recorded import Recorded
from reactivex.testing.subscription import Subscription

from rxllm.errors import (
    AuthenticationError,
    ConfigError,
    ConnectError,
    FirstTokenTimeout,
    IncompleteStream,
    RateLimited,
    ServerError,
    StreamInterrupted,
)
from rxllm.events import Started, TextDelta
from rxllm.operators import retry
from rxllm.operators._resil import backoff, is_retryable
from rxllm.response import Response
from rxllm.typing import Operator

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


S1, S2, S3 = (Started(provider="a", model="m", request_id=str(i)) for i in (1, 2, 3))
A, B = TextDelta(text="a"), TextDelta(text="b")


def in_turn(*sources: Observable[Any]) -> Observable[Any]:
    """A cold source whose n-th subscription subscribes ``sources[n]``."""
    pending = list(sources)

    def subscribe_(observer: abc.ObserverBase[Any], scheduler: Any = None) -> abc.DisposableBase:
        return pending.pop(0).subscribe(observer, scheduler=scheduler)

    return Observable(subscribe_)


def fixed(value: float) -> Callable[[], float]:
    """A 'random' source that always returns ``value``."""
    return lambda: value


def test_marble_retry_after_backoff() -> None:
    """A 503 before content is retried after the backoff and only the last attempt shows."""
    lookup: dict[str | float, Any] = {"s": S1, "t": S2, "a": A, "b": B}
    with marbles_testing(timespan=1.0) as (start, cold, _hot, exp):
        source = in_turn(
            cold("-s-#", lookup, ServerError("down", status=503)),
            cold("-t-a------b-|", lookup, None),
        )
        # failed at 3, waited wait_initial=2 (no jitter), resubscribed at 5: t 6, a 8, b 15
        expected = exp("--------(t,a)--b-|", lookup, None)  # a group spans its own width
        got = start(source.pipe(retry(wait_initial=2.0, jitter=0.0)))
        assert got == expected


def test_two_backoff_waits_at_exact_virtual_times() -> None:
    """Two 503s then success: the waits are wait_initial and 2*wait_initial, jitter applied."""
    scheduler = TestScheduler()
    first = scheduler.create_cold_observable(
        on_next(1, S1), on_error(1, ServerError("x", status=503))
    )
    second = scheduler.create_cold_observable(on_error(1, ServerError("y", status=503)))
    third = scheduler.create_cold_observable(on_next(1, S3), on_next(2, A), on_completed(3))
    source = in_turn(first, second, third)
    # random 0.5 with jitter 0.5 -> factor 0.75: waits 0.75 * 4 = 3 and 0.75 * 8 = 6,
    # inside the documented bounds [2, 4] and [4, 8]
    op: Operator[Any, Any] = retry(attempts=3, wait_initial=4.0, jitter=0.5, random=fixed(0.5))
    results = scheduler.start(lambda: source.pipe(op))
    assert first.subscriptions == [subscribe(200, 201)]
    assert second.subscriptions == [subscribe(204, 205)]
    assert third.subscriptions == [subscribe(211, 214)]
    assert results.messages == [on_next(213, S3), on_next(213, A), on_completed(214)]


@pytest.mark.parametrize("draw", [0.0, 0.25, 0.999999])
def test_waits_stay_inside_the_documented_bounds(draw: float) -> None:
    """Each wait lies in [(1 - jitter) * base, base] with base = min(wait_max, initial * 2**n)."""
    for n in range(10):
        base = min(3.0, 0.5 * 2**n)
        wait = backoff(n, wait_initial=0.5, wait_max=3.0, jitter=0.4, random=fixed(draw))
        assert 0.6 * base <= wait <= base


def test_retry_after_is_never_undercut() -> None:
    """A 429 with retry_after=3 waits 3 s even though the backoff says 0.5 s."""
    scheduler = TestScheduler()
    first = scheduler.create_cold_observable(
        on_error(1, RateLimited("slow", status=429, retry_after=3.0))
    )
    second = scheduler.create_cold_observable(on_next(1, A), on_completed(2))
    results = scheduler.start(lambda: in_turn(first, second).pipe(retry(jitter=0.0)))
    assert second.subscriptions == [subscribe(204, 206)]
    assert results.messages == [on_next(205, A), on_completed(206)]


def test_retry_after_above_the_cap_fails_at_once() -> None:
    """A retry_after above max_retry_after is not slept: the error goes on immediately."""
    scheduler = TestScheduler()
    error = RateLimited("come back tomorrow", status=429, retry_after=86400.0)
    first = scheduler.create_cold_observable(on_error(1, error))
    second = scheduler.create_cold_observable(on_next(1, A), on_completed(2))
    results = scheduler.start(lambda: in_turn(first, second).pipe(retry(max_retry_after=60.0)))
    assert results.messages == [on_error(201, error)]
    assert second.subscriptions == []


def test_non_retryable_error_is_not_retried() -> None:
    """A 401 (retryable False) ends the stream at once."""
    scheduler = TestScheduler()
    error = AuthenticationError("bad key", status=401)
    first = scheduler.create_cold_observable(on_error(1, error))
    second = scheduler.create_cold_observable(on_next(1, A), on_completed(2))
    results = scheduler.start(lambda: in_turn(first, second).pipe(retry()))
    assert results.messages == [on_error(201, error)]
    assert second.subscriptions == []


def test_no_retry_after_the_first_token() -> None:
    """A failure after content passes through; the source is not subscribed again."""
    scheduler = TestScheduler()
    error = StreamInterrupted("cut", partial=Response(text="a"), cause=ConnectError("reset"))
    first = scheduler.create_cold_observable(on_next(1, A), on_error(2, error))
    second = scheduler.create_cold_observable(on_next(1, B), on_completed(2))
    results = scheduler.start(lambda: in_turn(first, second).pipe(retry()))
    assert results.messages == [on_next(201, A), on_error(202, error)]
    assert second.subscriptions == []


def test_even_a_retryable_error_after_content_is_not_retried() -> None:
    """A raw retryable error after content still passes through (no token twice)."""
    scheduler = TestScheduler()
    error = ServerError("late", status=500)
    first = scheduler.create_cold_observable(on_next(1, A), on_error(2, error))
    second = scheduler.create_cold_observable(on_next(1, A), on_completed(2))
    results = scheduler.start(lambda: in_turn(first, second).pipe(retry()))
    assert results.messages == [on_next(201, A), on_error(202, error)]


def test_attempts_counts_the_first_try() -> None:
    """attempts=2 subscribes twice at most and then raises the last error."""
    scheduler = TestScheduler()
    last = ServerError("2", status=502)
    first = scheduler.create_cold_observable(on_error(1, ServerError("1", status=500)))
    second = scheduler.create_cold_observable(on_error(1, last))
    third = scheduler.create_cold_observable(on_completed(1))
    results = scheduler.start(
        lambda: in_turn(first, second, third).pipe(retry(attempts=2, jitter=0.0))
    )
    assert results.messages == [on_error(202.5, last)]
    assert third.subscriptions == []


def test_default_on_is_the_retryable_attribute() -> None:
    """Without on=, only errors that say they are retryable are retried (no catch-all)."""
    assert is_retryable(ServerError("x", status=500))
    assert is_retryable(ConnectError("x"))
    assert is_retryable(FirstTokenTimeout("x", timeout=1.0))
    assert is_retryable(IncompleteStream("hung up", partial=Response()))
    assert not is_retryable(IncompleteStream("cut", partial=Response(text="a")))
    assert not is_retryable(ValueError("a bug"))
    assert not is_retryable(AuthenticationError("x", status=401))
    errors: list[Exception] = []
    reactivex.throw(ValueError("bug")).pipe(retry(scheduler=TestScheduler())).subscribe(
        on_error=errors.append
    )
    assert [type(e) for e in errors] == [ValueError]


def test_custom_on_predicate() -> None:
    """on= accepts a predicate that replaces the default."""
    scheduler = TestScheduler()
    first = scheduler.create_cold_observable(on_error(1, ValueError("flaky")))
    second = scheduler.create_cold_observable(on_next(1, A), on_completed(2))
    op: Operator[Any, Any] = retry(on=lambda e: isinstance(e, ValueError), jitter=0.0)
    results = scheduler.start(lambda: in_turn(first, second).pipe(op))
    assert results.messages == [on_next(202.5, A), on_completed(203.5)]


def test_failed_attempts_leave_no_lifecycle_frames() -> None:
    """Started frames of failed attempts are dropped; only the winning attempt's show."""
    got: list[Any] = []
    scheduler = TestScheduler()
    source = in_turn(
        reactivex.concat(reactivex.of(S1), reactivex.throw(ServerError("x", status=500))),
        reactivex.of(S2, A),
    )
    source.pipe(retry(scheduler=scheduler)).subscribe(got.append)
    scheduler.start()
    assert got == [S2, A]


def test_disposing_during_the_wait_cancels_the_retry() -> None:
    """A subscription disposed while waiting never resubscribes."""
    scheduler = TestScheduler()
    first = scheduler.create_cold_observable(on_error(1, ServerError("x", status=500)))
    second = scheduler.create_cold_observable(on_next(1, A), on_completed(2))
    op: Operator[Any, Any] = retry(wait_initial=10.0, jitter=0.0)
    results = scheduler.start(lambda: in_turn(first, second).pipe(op), disposed=205)
    assert results.messages == []
    assert second.subscriptions == []


@pytest.mark.parametrize(
    "kwargs",
    [{"attempts": 0}, {"wait_initial": -1.0}, {"jitter": 1.5}, {"max_retry_after": -1.0}],
)
def test_rejects_impossible_settings(kwargs: dict[str, Any]) -> None:
    """Settings that make no sense raise ConfigError at once."""
    with pytest.raises(ConfigError):
        retry(**kwargs)
