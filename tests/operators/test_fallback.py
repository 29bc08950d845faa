"""``fallback``: switch sources before the first token only, hiding failed attempts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest
import reactivex
from reactivex import operators as rxops
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.marbles import marbles_testing
from reactivex.testing.recorded import Recorded
from reactivex.testing.subscription import Subscription

from rxllm.errors import (
    AuthenticationError,
    BadRequest,
    CircuitOpen,
    ConnectError,
    FirstTokenTimeout,
    IncompleteStream,
    Overloaded,
    ProviderError,
    ProviderExhausted,
    QuotaExhausted,
    RateLimited,
    RequestTimeout,
    ServerError,
    StreamInterrupted,
)
from rxllm.events import Started, TextDelta, Usage
from rxllm.operators import (
    CircuitBreaker,
    circuit_breaker,
    fallback,
    first_token_timeout,
    idle_timeout,
    retry,
)
from rxllm.operators._resil import Lean, clock_for, should_fall_over
from rxllm.response import Response

on_next = cast(Callable[[float, Any], Recorded[Any]], ReactiveTest.on_next)
on_error = cast(Callable[[float, Exception], Recorded[Any]], ReactiveTest.on_error)
on_completed = cast(Callable[[float], Recorded[Any]], ReactiveTest.on_completed)
subscribe = cast(Callable[[float, float], Subscription], ReactiveTest.subscribe)


def state(breaker: CircuitBreaker) -> str:
    """A breaker's state as a plain string."""
    return str(breaker.state)


def err(record: Recorded[Any]) -> Any:
    """The exception of a recorded on_error."""
    notification: Any = record.value
    return notification.exception


def kind(record: Recorded[Any]) -> str:
    """``"N"``, ``"E"`` or ``"C"``: the kind of a recorded notification."""
    notification: Any = record.value
    return str(notification.kind)


SA = Started(provider="a", model="m")
SB = Started(provider="b", model="m")
A, B, C = TextDelta(text="a"), TextDelta(text="b"), TextDelta(text="c")
U = Usage(input_tokens=3)
LOOKUP: dict[str | float, Any] = {"s": SA, "t": SB, "a": A, "b": B, "c": C, "u": U}


def test_marble_fallback_hides_the_failed_attempt() -> None:
    """A source failing before content is replaced and its Started frame never shows."""
    with marbles_testing(timespan=1.0) as (start, cold, _hot, exp):
        primary = cold("-s-#", LOOKUP, RateLimited("busy", status=429))
        alternative = cold("-t-a------b-|", LOOKUP, None)
        expected = exp("------(t,a)--b-|", LOOKUP, None)  # a group spans its own width
        assert start(primary.pipe(fallback(alternative))) == expected


def test_marble_error_after_content_passes_through() -> None:
    """After the first token the error passes through untouched and nothing is replayed."""
    boom = ServerError("mid-stream", status=500)
    with marbles_testing(timespan=1.0) as (start, cold, _hot, exp):
        primary = cold("-s-a-----#", LOOKUP, boom)
        alternative = cold("-t-b-|", LOOKUP, None)
        expected = exp("---(s,a)-#", LOOKUP, boom)
        assert start(primary.pipe(fallback(alternative))) == expected


def test_alternative_is_never_subscribed_after_content() -> None:
    """A failure after content never subscribes the alternative."""
    scheduler = TestScheduler()
    primary = scheduler.create_cold_observable(
        on_next(1, SA), on_next(2, A), on_error(3, ConnectError("reset"))
    )
    alternative = scheduler.create_cold_observable(on_next(1, B), on_completed(2))
    results = scheduler.start(lambda: primary.pipe(fallback(alternative)))
    assert [kind(m) for m in results.messages] == ["N", "N", "E"]
    assert alternative.subscriptions == []
    assert primary.subscriptions == [subscribe(200, 203)]


def test_switch_times_and_subscriptions() -> None:
    """The alternative is subscribed the moment the primary fails, the primary is released."""
    scheduler = TestScheduler()
    primary = scheduler.create_cold_observable(
        on_next(10, SA), on_next(15, U), on_error(20, Overloaded("529", status=529))
    )
    alternative = scheduler.create_cold_observable(
        on_next(10, SB), on_next(20, A), on_completed(30)
    )
    results = scheduler.start(lambda: primary.pipe(fallback(alternative)))
    assert results.messages == [on_next(240, SB), on_next(240, A), on_completed(250)]
    assert primary.subscriptions == [subscribe(200, 220)]
    assert alternative.subscriptions == [subscribe(220, 250)]


def test_bad_request_is_raised_as_is() -> None:
    """A 400 does not fall over: the same request would fail everywhere."""
    scheduler = TestScheduler()
    error = BadRequest("bad schema", status=400)
    primary = scheduler.create_cold_observable(on_error(5, error))
    alternative = scheduler.create_cold_observable(on_next(1, B), on_completed(2))
    results = scheduler.start(lambda: primary.pipe(fallback(alternative)))
    assert results.messages == [on_error(205, error)]
    assert err(results.messages[0]) is error
    assert alternative.subscriptions == []


def test_last_error_is_raised_when_every_source_fails() -> None:
    """When the last alternative fails too, its own error ends the stream."""
    first, last = RateLimited("a", status=429), ServerError("b", status=503)
    stream = reactivex.throw(first).pipe(fallback(reactivex.throw(last)))
    seen: list[Exception] = []
    stream.subscribe(on_error=seen.append)
    assert seen == [last]


def test_factories_are_called_only_when_needed() -> None:
    """A factory alternative is called only when the stream falls over to it."""
    calls: list[str] = []

    def make(name: str) -> Any:
        def factory() -> reactivex.Observable[Any]:
            calls.append(name)
            return reactivex.of(TextDelta(text=name))

        return factory

    got: list[Any] = []
    reactivex.of(A).pipe(fallback(make("x"), make("y"))).subscribe(got.append)
    assert calls == []
    reactivex.throw(ConnectError("refused")).pipe(fallback(make("x"), make("y"))).subscribe(
        got.append
    )
    assert calls == ["x"]
    assert got == [A, TextDelta(text="x")]


def test_synchronous_sources_never_emit_twice() -> None:
    """Sources that fail and answer synchronously still give each event exactly once."""
    got: list[Any] = []
    done: list[bool] = []
    reactivex.concat(reactivex.of(SA), reactivex.throw(ServerError("x", status=500))).pipe(
        fallback(
            reactivex.throw(ConnectError("refused")),
            reactivex.of(SB, A, B),
        )
    ).subscribe(got.append, on_completed=lambda: done.append(True))
    assert got == [SB, A, B]
    assert done == [True]


def test_completion_without_content_flushes_lifecycle_frames() -> None:
    """A stream that completes without content is a success: its held frames are shown."""
    got: list[Any] = []
    reactivex.of(SA, U).pipe(fallback(reactivex.of(B))).subscribe(got.append)
    assert got == [SA, U]


def test_custom_on_decides_what_falls_over() -> None:
    """``on=`` replaces the default classification (here: only ValueError falls over)."""
    got: list[Any] = []
    errors: list[Exception] = []
    reactivex.throw(ValueError("x")).pipe(fallback(reactivex.of(B), on=ValueError)).subscribe(
        got.append
    )
    reactivex.throw(ConnectError("x")).pipe(fallback(reactivex.of(B), on=ValueError)).subscribe(
        got.append, errors.append
    )
    assert got == [B]
    assert [type(e) for e in errors] == [ConnectError]


def test_incomplete_stream_before_content_falls_over() -> None:
    """An IncompleteStream with an empty partial is a stream-start failure."""
    got: list[Any] = []
    empty = IncompleteStream("closed early", partial=Response())
    reactivex.throw(empty).pipe(fallback(reactivex.of(B))).subscribe(got.append)
    assert got == [B]


def test_interruption_with_content_never_falls_over() -> None:
    """A StreamInterrupted carrying content is passed on even if no content passed here."""
    errors: list[Exception] = []
    cut = StreamInterrupted("cut", partial=Response(text="hel"))
    reactivex.throw(cut).pipe(fallback(reactivex.of(B))).subscribe(on_error=errors.append)
    assert errors == [cut]


def test_disposing_disposes_the_current_source() -> None:
    """Disposing the subscription releases the source currently streaming."""
    scheduler = TestScheduler()
    primary = scheduler.create_cold_observable(on_error(10, ConnectError("refused")))
    alternative = scheduler.create_cold_observable(on_next(10, SB), on_next(500, A))
    scheduler.start(lambda: primary.pipe(fallback(alternative)), disposed=300)
    assert alternative.subscriptions == [subscribe(210, 300)]


def test_rejects_alternatives_that_are_not_sources() -> None:
    """Alternatives must be Observables or factories."""
    with pytest.raises(TypeError):
        fallback(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (AuthenticationError("k", status=401), True),
        (AuthenticationError("k", status=403), True),
        (RequestTimeout("t", status=408), True),
        (ServerError("c", status=409), True),
        (RateLimited("r", status=429), True),
        (QuotaExhausted("q", status=429), True),
        (ServerError("s", status=500), True),
        (ServerError("s", status=503), True),
        (Overloaded("o", status=529), True),
        (ServerError("in-band", status=200), True),
        (ProviderError("unknown in-band"), True),
        (ConnectError("refused"), True),
        (FirstTokenTimeout("slow", timeout=1.0), True),
        (CircuitOpen("open"), True),
        (ProviderExhausted("spent"), True),
        (TimeoutError(), True),
        (IncompleteStream("early", partial=Response()), True),
        (BadRequest("b", status=400), False),
        (BadRequest("b", status=404), False),
        (BadRequest("b", status=422), False),
        (ProviderError("p", status=413), False),
        (StreamInterrupted("late", partial=Response(text="x")), False),
        (IncompleteStream("late", partial=Response(text="x")), False),
        (ValueError("a bug"), False),
    ],
)
def test_default_classification(error: Exception, expected: bool) -> None:
    """The default ``on`` follows DESIGN.md's list of what falls over."""
    assert should_fall_over(error) is expected


# --- stacked operators (direct forwarding between rxllm stages) ---------------------------


def test_stacked_operators_retry_a_first_token_timeout_in_virtual_time() -> None:
    """breaker + timeouts + retry + fallback stacked: a stalled try is retried once."""
    scheduler = TestScheduler()
    stalled = scheduler.create_cold_observable(on_next(1, SA))
    good = scheduler.create_cold_observable(
        on_next(1, SA), on_next(2, A), on_next(3, B), on_completed(4)
    )
    tries = iter([stalled, good])
    source = reactivex.defer(lambda _: next(tries))
    alternative = scheduler.create_cold_observable(on_next(1, C), on_completed(2))
    breaker = CircuitBreaker("a", failure_threshold=5, clock=clock_for(scheduler))
    results = scheduler.start(
        lambda: source.pipe(
            circuit_breaker(breaker),
            first_token_timeout(5.0),
            idle_timeout(5.0),
            retry(wait_initial=1.0, jitter=0.0),
            fallback(alternative),
        )
    )
    # the stall times out at 205, the retry subscribes at 206: Started 207, a 208, b 209
    assert results.messages == [
        on_next(208, SA),
        on_next(208, A),
        on_next(209, B),
        on_completed(210),
    ]
    assert stalled.subscriptions == [subscribe(200, 205)]
    assert alternative.subscriptions == []
    assert state(breaker) == "closed"


def test_stack_forwards_exactly_once_and_stops_on_early_disposal() -> None:
    """A consumer that takes two items from a synchronous stack gets two and one completion."""
    got: list[Any] = []
    done: list[bool] = []
    pulled: list[int] = []

    def numbered() -> reactivex.Observable[Any]:
        def gen() -> Any:
            for i in range(1000):
                pulled.append(i)
                yield TextDelta(text=str(i))

        return reactivex.from_iterable(gen())

    scheduler = TestScheduler()
    numbered().pipe(
        circuit_breaker(CircuitBreaker("s")),
        first_token_timeout(5.0, scheduler=scheduler),
        idle_timeout(5.0, scheduler=scheduler),
        retry(scheduler=scheduler),
        fallback(reactivex.empty()),
        rxops.take(2),
    ).subscribe(got.append, on_completed=lambda: done.append(True))
    scheduler.advance_to(100)
    assert got == [TextDelta(text="0"), TextDelta(text="1")]
    assert done == [True]
    assert len(pulled) <= 3


def test_a_stage_that_raises_at_subscribe_errors_once() -> None:
    """An rxllm stage whose upstream raises while subscribing delivers that error once."""

    def broken(_observer: Any, _scheduler: Any = None) -> Any:
        raise RuntimeError("cannot subscribe")

    errors: list[Exception] = []
    scheduler = TestScheduler()
    for source in (reactivex.Observable(broken), Lean(broken)):
        source.pipe(
            first_token_timeout(5.0, scheduler=scheduler), fallback(reactivex.of(B))
        ).subscribe(on_error=errors.append)
    scheduler.advance_to(100)  # the first-token timers were cancelled: no second error
    assert [str(e) for e in errors] == ["cannot subscribe", "cannot subscribe"]
