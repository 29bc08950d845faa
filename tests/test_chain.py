"""``Chain``: the first-token rule across providers, with retries, breakers and hooks."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Iterator
from typing import Any, cast

import orjson
import pytest
from reactivex import Observable, abc
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.coldobservable import ColdObservable
from reactivex.testing.mockobserver import MockObserver
from reactivex.testing.recorded import Recorded
from reactivex.testing.subscription import Subscription

import rxllm
from rxllm.chain import (
    BreakerPolicy,
    Chain,
    CircuitChangeInfo,
    FallbackInfo,
    Hooks,
    RequestEndInfo,
    RequestStartInfo,
    RetryInfo,
    RetryPolicy,
    StreamingProvider,
    get_breaker,
    reset_registry,
)
from rxllm.errors import (
    AllProvidersFailed,
    AuthenticationError,
    BadRequest,
    ConfigError,
    ConnectError,
    ConnectionLost,
    FirstTokenTimeout,
    IdleTimeout,
    IncompleteStream,
    QuotaExhausted,
    RateLimited,
    ServerError,
    StreamInterrupted,
)
from rxllm.events import Finished, Started, TextDelta, Usage
from rxllm.request import Request

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


REQ = Request.of("hi")
SA, SB = Started(provider="a", model="m"), Started(provider="b", model="m")
STOP = Finished(reason="stop")
T = [TextDelta(text=f"t{i}") for i in range(10)]
KEY = "sk-abcdefghijklmnopqrstuvwxyz012345"


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    """Every test starts with no shared breaker or exhaustion mark."""
    reset_registry()
    yield
    reset_registry()


class Fake:
    """A provider whose n-th request plays ``script[n]`` (the last entry repeats)."""

    def __init__(
        self, name: str, *script: Observable[Any], cost_per_token: float | None = None
    ) -> None:
        self.name = name
        self.script = list(script)
        self.cost_per_token = cost_per_token
        self.requests = 0

    def stream(self, request: Request) -> Observable[Any]:
        def subscribe_(
            observer: abc.ObserverBase[Any], scheduler: Any = None
        ) -> abc.DisposableBase:
            source = self.script[min(self.requests, len(self.script) - 1)]
            self.requests += 1
            return source.subscribe(observer, scheduler=scheduler)

        return Observable(subscribe_)


def ok_b(sched: TestScheduler) -> ColdObservable[Any]:
    """B's good answer: Started, two tokens, Finished."""
    return sched.create_cold_observable(
        on_next(1, SB), on_next(2, T[0]), on_next(3, T[1]), on_next(4, STOP), on_completed(5)
    )


def run_at(
    sched: TestScheduler, time: float, source: Observable[Any], *, dispose_at: float | None = None
) -> MockObserver[Any]:
    """Subscribe ``source`` at virtual ``time`` (and dispose it at ``dispose_at``)."""
    observer: MockObserver[Any] = sched.create_observer()
    holder: list[Any] = []
    sched.schedule_absolute(
        time, lambda *_: holder.append(source.subscribe(observer, scheduler=sched))
    )
    if dispose_at is not None:
        sched.schedule_absolute(dispose_at, lambda *_: holder[0].dispose())
    return observer


def values(observer: MockObserver[Any]) -> list[Any]:
    """The on_next values an observer got."""
    return [cast(Any, m.value).value for m in observer.messages if kind(m) == "N"]


def error_of(observer: MockObserver[Any]) -> Exception:
    """The error an observer ended with."""
    last = observer.messages[-1]
    assert kind(last) == "E", observer.messages
    error: Exception = err(last)
    return error


def fixed(value: float) -> Callable[[], float]:
    """A 'random' source that always returns ``value``."""
    return lambda: value


# --- the acceptance list ------------------------------------------------------------------


def test_rate_limited_first_provider_falls_over_at_once() -> None:
    """A 429 with retry_after=2 before any event: B streams at once, one fallback, no repeats."""
    sched = TestScheduler()
    a = Fake(
        "a",
        sched.create_cold_observable(
            on_next(0.5, SA), on_error(1, RateLimited("slow down", status=429, retry_after=2.0))
        ),
    )
    b = Fake("b", ok_b(sched))
    fallbacks: list[FallbackInfo] = []
    chain = Chain([a, b], hooks=Hooks(on_fallback=fallbacks.append), scheduler=sched)
    results = sched.start(lambda: chain.stream(REQ))
    assert results.messages == [
        on_next(203, SB),
        on_next(203, T[0]),
        on_next(204, T[1]),
        on_next(205, STOP),
        on_completed(206),
    ]
    assert a.requests == 1
    assert b.script[0].subscriptions == [subscribe(201, 206)]  # type: ignore[attr-defined]
    assert [(f.from_provider, f.to_provider, f.reason) for f in fallbacks] == [
        ("a", "b", "rate_limited")
    ]


def test_server_errors_are_retried_after_backoff_waits() -> None:
    """503 twice then success: A streams after two backoff waits inside the documented bounds."""
    sched = TestScheduler()
    fail = sched.create_cold_observable(on_next(0.5, SA), on_error(1, ServerError("x", status=503)))
    good = sched.create_cold_observable(
        on_next(1, SA), on_next(2, T[0]), on_next(3, T[1]), on_completed(4)
    )
    a = Fake("a", fail, fail, good)
    b = Fake("b", ok_b(sched))
    starts: list[float] = []
    retries: list[RetryInfo] = []
    hooks = Hooks(
        on_request_start=lambda _info: starts.append(sched.clock),
        on_retry=retries.append,
    )
    policy = RetryPolicy(attempts=3, wait_initial=0.5, jitter=0.5, random=fixed(0.5))
    chain = Chain([a, b], retry=policy, hooks=hooks, scheduler=sched)
    results = sched.start(lambda: chain.stream(REQ))
    # waits: 0.5 * 0.75 = 0.375 (bounds [0.25, 0.5]) and 1.0 * 0.75 = 0.75 (bounds [0.5, 1])
    assert starts == [200, 201.375, 203.125]
    assert [(r.provider, r.attempt, r.wait) for r in retries] == [("a", 2, 0.375), ("a", 3, 0.75)]
    assert 0.25 <= retries[0].wait <= 0.5
    assert 0.5 <= retries[1].wait <= 1.0
    assert values(results) == [SA, T[0], T[1]]  # one Started, no token twice
    assert results.messages[-1] == on_completed(207.125)
    assert b.requests == 0


def test_interruption_after_content_keeps_the_exact_partial() -> None:
    """A fails after 40% of its tokens: StreamInterrupted with exactly that text, B untouched."""
    sched = TestScheduler()
    lost = ConnectionLost("connection reset")
    a = Fake(
        "a",
        sched.create_cold_observable(
            on_next(1, SA), *[on_next(2 + i, T[i]) for i in range(4)], on_error(7, lost)
        ),
    )
    b = Fake("b", ok_b(sched))
    chain = Chain([a, b], scheduler=sched)
    results = sched.start(lambda: chain.stream(REQ))
    error = error_of(results)
    assert isinstance(error, StreamInterrupted)
    assert error.partial.text == "t0t1t2t3"
    assert error.partial.provider == "a"
    assert error.cause is lost
    assert values(results) == [SA, *T[:4]]
    assert b.requests == 0


def _openai_chunk(text: str) -> bytes:
    payload = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-x",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class Replayed:
    """A provider backed by ``rxllm.replay`` of recorded OpenAI bytes."""

    def __init__(self, name: str, chunks: list[bytes], **kwargs: Any) -> None:
        self.name = name
        self.chunks = chunks
        self.kwargs = kwargs
        self.requests = 0

    def stream(self, request: Request) -> Observable[Any]:
        def subscribe_(
            observer: abc.ObserverBase[Any], scheduler: Any = None
        ) -> abc.DisposableBase:
            self.requests += 1
            return rxllm.replay("openai", self.chunks, provider=self.name, **self.kwargs).subscribe(
                observer, scheduler=scheduler
            )

        return Observable(subscribe_)


def test_truncated_replay_passes_the_incomplete_stream_through() -> None:
    """A recorded stream cut after 4 of 10 tokens ends in IncompleteStream; B is never asked."""
    chunks = [_openai_chunk(f"t{i}") for i in range(10)]
    a = Replayed("a", chunks[:4])
    b = Replayed("b", [*chunks, b"data: [DONE]\n\n"])
    got: list[Any] = []
    errors: list[Exception] = []
    Chain([a, b]).stream(REQ).subscribe(got.append, errors.append)
    [error] = errors
    assert isinstance(error, IncompleteStream)
    assert error.partial.text == "t0t1t2t3"
    assert "".join(e.text for e in got if isinstance(e, TextDelta)) == "t0t1t2t3"
    assert b.requests == 0


def test_breaker_trips_skips_and_lets_exactly_one_probe_through() -> None:
    """A tripped breaker skips A (circuit_open); after open_for exactly one probe reaches A."""
    sched = TestScheduler()
    fail = sched.create_cold_observable(on_error(1, ServerError("down", status=503)))
    slow_ok = sched.create_cold_observable(
        on_next(1, SA), on_next(2, T[5]), on_next(9, STOP), on_completed(10)
    )
    a = Fake("a", fail, fail, slow_ok)
    b = Fake("b", ok_b(sched))
    fallbacks: list[FallbackInfo] = []
    changes: list[CircuitChangeInfo] = []
    chain = Chain(
        [a, b],
        retry=RetryPolicy(attempts=1),
        breaker=BreakerPolicy(failure_threshold=2, open_for=30.0),
        hooks=Hooks(on_fallback=fallbacks.append, on_circuit_change=changes.append),
        scheduler=sched,
    )
    first = run_at(sched, 200, chain.stream(REQ))
    second = run_at(sched, 210, chain.stream(REQ))  # second failure: the breaker opens at 211
    skipped = run_at(sched, 220, chain.stream(REQ))
    probe = run_at(sched, 245, chain.stream(REQ))  # half-open since 241: the probe
    during = run_at(sched, 247, chain.stream(REQ))  # the probe is still streaming
    after = run_at(sched, 260, chain.stream(REQ))  # the probe succeeded: closed
    sched.advance_to(300)
    assert a.requests == 4  # 2 failures + 1 probe + 1 after closing; none while open
    for observer in (first, second, skipped, during):
        assert values(observer) == [SB, T[0], T[1], STOP]
    assert values(probe) == [SA, T[5], STOP]
    assert values(after) == [SA, T[5], STOP]
    assert [(f.from_provider, f.to_provider, f.reason) for f in fallbacks] == [
        ("a", "b", "server_error"),
        ("a", "b", "server_error"),
        ("a", "b", "circuit_open"),
        ("a", "b", "circuit_open"),
    ]
    assert [(c.provider, c.old, c.new) for c in changes] == [
        ("a", "closed", "open"),
        ("a", "open", "half_open"),
        ("a", "half_open", "closed"),
    ]


def test_first_token_timeout_falls_over_and_closes_the_request() -> None:
    """No content from A within the limit: A's upstream is disposed and B answers."""
    sched = TestScheduler()
    slow = sched.create_cold_observable(on_next(1, SA), on_next(30, T[9]), on_completed(31))
    a = Fake("a", slow)
    b = Fake("b", ok_b(sched))
    ends: list[RequestEndInfo] = []
    chain = Chain(
        [a, b], first_token_timeout=5.0, hooks=Hooks(on_request_end=ends.append), scheduler=sched
    )
    results = sched.start(lambda: chain.stream(REQ))
    assert slow.subscriptions == [subscribe(200, 205)]
    assert values(results) == [SB, T[0], T[1], STOP]
    assert results.messages[0].time == 207
    assert [(e.provider, e.outcome) for e in ends] == [
        ("a", "first_token_timeout"),
        ("b", "success"),
    ]
    assert isinstance(ends[0].error, FirstTokenTimeout)


def test_idle_stall_after_content_interrupts_and_closes_the_request() -> None:
    """A stalls after two tokens: StreamInterrupted(IdleTimeout) with the partial; A disposed."""
    sched = TestScheduler()
    stalling = sched.create_cold_observable(on_next(1, T[0]), on_next(2, T[1]), on_next(99, T[2]))
    a = Fake("a", stalling)
    b = Fake("b", ok_b(sched))
    chain = Chain([a, b], idle_timeout=5.0, scheduler=sched)
    results = sched.start(lambda: chain.stream(REQ))
    error = error_of(results)
    assert results.messages[-1].time == 207
    assert isinstance(error, StreamInterrupted)
    assert isinstance(error.cause, IdleTimeout)
    assert error.partial.text == "t0t1"
    assert stalling.subscriptions == [subscribe(200, 207)]
    assert b.requests == 0


def test_all_failing_lists_every_attempt() -> None:
    """Every provider failing before content raises AllProvidersFailed with each try."""
    sched = TestScheduler()
    a = Fake("a", sched.create_cold_observable(on_error(1, ServerError("down", status=503))))
    b = Fake("b", sched.create_cold_observable(on_error(1, AuthenticationError("no", status=401))))
    chain = Chain(
        [a, b], retry=RetryPolicy(attempts=2, wait_initial=1.0, jitter=0.0), scheduler=sched
    )
    results = sched.start(lambda: chain.stream(REQ))
    error = error_of(results)
    assert isinstance(error, AllProvidersFailed)
    assert [(t.provider, t.kind, t.status) for t in error.attempts] == [
        ("a", "server_error", 503),
        ("a", "server_error", 503),
        ("b", "authentication", 401),
    ]
    assert [t.elapsed for t in error.attempts] == [1.0, 1.0, 1.0]
    assert len(error.errors) == 3
    assert "a server_error (503)" in str(error)
    assert "b authentication (401)" in str(error)
    assert results.messages[-1].time == 204
    assert values(results) == []


def test_bad_request_is_raised_as_is_without_fallback() -> None:
    """A 400 is the request's fault: raised unchanged, no retry, no fallback."""
    sched = TestScheduler()
    bad = BadRequest("messages must not be empty", status=400)
    a = Fake("a", sched.create_cold_observable(on_error(1, bad)))
    b = Fake("b", ok_b(sched))
    fallbacks: list[FallbackInfo] = []
    chain = Chain([a, b], hooks=Hooks(on_fallback=fallbacks.append), scheduler=sched)
    results = sched.start(lambda: chain.stream(REQ))
    assert error_of(results) is bad
    assert (a.requests, b.requests, fallbacks) == (1, 0, [])


def test_authentication_error_falls_over_without_retry() -> None:
    """A 401 goes straight to the next provider: A is asked once."""
    sched = TestScheduler()
    a = Fake("a", sched.create_cold_observable(on_error(1, AuthenticationError("key", status=401))))
    b = Fake("b", ok_b(sched))
    retries: list[RetryInfo] = []
    chain = Chain([a, b], hooks=Hooks(on_retry=retries.append), scheduler=sched)
    results = sched.start(lambda: chain.stream(REQ))
    assert values(results) == [SB, T[0], T[1], STOP]
    assert (a.requests, retries) == (1, [])


def test_exhausted_provider_is_skipped_until_reset() -> None:
    """A quota error marks A exhausted until reset_at: later requests skip it, then try again."""
    sched = TestScheduler()
    quota = QuotaExhausted("insufficient_quota", status=429, reset_at=300.0)
    good = sched.create_cold_observable(on_next(1, T[7]), on_completed(2))
    a = Fake("a", sched.create_cold_observable(on_error(1, quota)), good)
    b = Fake("b", ok_b(sched))
    fallbacks: list[FallbackInfo] = []
    chain = Chain([a, b], hooks=Hooks(on_fallback=fallbacks.append), scheduler=sched)
    first = run_at(sched, 200, chain.stream(REQ))
    skipped = run_at(sched, 250, chain.stream(REQ))
    later = run_at(sched, 301, chain.stream(REQ))
    sched.advance_to(400)
    assert values(first) == values(skipped) == [SB, T[0], T[1], STOP]
    assert values(later) == [T[7]]
    assert a.requests == 2
    assert [f.reason for f in fallbacks] == ["quota_exhausted", "exhausted"]


def test_exhaustion_without_reset_time_lasts_the_default_period() -> None:
    """A QuotaExhausted without reset_at skips the provider for exhausted_for seconds."""
    sched = TestScheduler()
    quota = QuotaExhausted("spend limit reached", status=429)
    all_failed_at: list[list[tuple[str, str]]] = []
    a = Fake("a", sched.create_cold_observable(on_error(1, quota)))
    chain = Chain([a], exhausted_for=60.0, scheduler=sched)
    observers = [run_at(sched, t, chain.stream(REQ)) for t in (200, 250, 262)]
    sched.advance_to(400)
    for observer in observers:
        error = error_of(observer)
        assert isinstance(error, AllProvidersFailed)
        all_failed_at.append([(t.provider, t.kind) for t in error.attempts])
    assert all_failed_at == [
        [("a", "quota_exhausted")],
        [("a", "exhausted")],
        [("a", "quota_exhausted")],
    ]
    assert a.requests == 2


def test_cost_ordering_puts_cheapest_first_and_unknown_last() -> None:
    """order="cost" sorts providers by cost_per_token ascending, unknown costs last."""
    sched = TestScheduler()
    pricey = Fake("pricey", ok_b(sched), cost_per_token=3e-6)
    cheap = Fake("cheap", ok_b(sched), cost_per_token=1e-7)
    unknown = Fake("unknown", ok_b(sched))
    chain = Chain([unknown, pricey, cheap], order="cost", scheduler=sched)
    assert [p.name for p in chain.providers] == ["cheap", "pricey", "unknown"]
    sched.start(lambda: chain.stream(REQ))
    assert (cheap.requests, pricey.requests, unknown.requests) == (1, 0, 0)


def test_hooks_report_each_attempt() -> None:
    """Start and end fire per attempt with outcome, time to first token, duration and usage."""
    sched = TestScheduler()
    usage = Usage(input_tokens=5, output_tokens=2, total_tokens=7)
    fail = sched.create_cold_observable(on_error(2, ServerError("x", status=500)))
    good = sched.create_cold_observable(
        on_next(1, SA), on_next(3, T[0]), on_next(4, usage), on_next(5, STOP), on_completed(6)
    )
    a = Fake("a", fail, good)
    starts: list[RequestStartInfo] = []
    ends: list[RequestEndInfo] = []
    chain = Chain(
        [a],
        retry=RetryPolicy(wait_initial=1.0, jitter=0.0),
        hooks=Hooks(on_request_start=starts.append, on_request_end=ends.append),
        scheduler=sched,
    )
    sched.start(lambda: chain.stream(REQ))
    assert [(s.provider, s.attempt, s.request) for s in starts] == [("a", 1, REQ), ("a", 2, REQ)]
    failed, succeeded = ends
    assert (failed.outcome, failed.status, failed.time_to_first_token, failed.duration) == (
        "server_error",
        500,
        None,
        2.0,
    )
    assert (succeeded.outcome, succeeded.time_to_first_token, succeeded.duration) == (
        "success",
        3.0,
        6.0,
    )
    assert succeeded.usage == usage


def test_raising_hooks_never_break_the_stream(caplog: pytest.LogCaptureFixture) -> None:
    """Hooks that raise are logged on the rxllm logger and the stream still completes."""

    def boom(_info: Any) -> None:
        raise RuntimeError("hook bug")

    sched = TestScheduler()
    a = Fake("a", sched.create_cold_observable(on_error(1, AuthenticationError("k", status=401))))
    b = Fake("b", ok_b(sched))
    hooks = Hooks(
        on_request_start=boom,
        on_request_end=boom,
        on_fallback=boom,
        on_retry=boom,
        on_circuit_change=boom,
    )
    chain = Chain([a, b], hooks=hooks, breaker=BreakerPolicy(failure_threshold=1), scheduler=sched)
    with caplog.at_level(logging.ERROR, logger="rxllm"):
        results = sched.start(lambda: chain.stream(REQ))
    assert values(results) == [SB, T[0], T[1], STOP]
    assert kind(results.messages[-1]) == "C"
    assert "hook" in caplog.text
    assert len([r for r in caplog.records if r.name == "rxllm"]) >= 5


def test_cancellation_is_neither_success_nor_failure() -> None:
    """Disposing mid-stream closes A's request, reports cancelled, and leaves the breaker alone."""
    sched = TestScheduler()
    endless = sched.create_cold_observable(on_next(1, SA), on_next(2, T[0]), on_next(50, T[1]))
    a = Fake("a", endless)
    ends: list[RequestEndInfo] = []
    chain = Chain(
        [a],
        breaker=BreakerPolicy(failure_threshold=1),
        hooks=Hooks(on_request_end=ends.append),
        scheduler=sched,
    )
    sched.start(lambda: chain.stream(REQ), disposed=210)
    assert endless.subscriptions == [subscribe(200, 210)]
    assert [(e.outcome, e.duration, e.time_to_first_token) for e in ends] == [
        ("cancelled", 10.0, 2.0)
    ]
    breaker = get_breaker("a")
    assert breaker is not None
    assert state(breaker) == "closed"
    assert breaker._consecutive == 0


def test_cancellation_during_a_retry_wait_stops_everything() -> None:
    """Disposing while the chain waits to retry never makes another request."""
    sched = TestScheduler()
    a = Fake("a", sched.create_cold_observable(on_error(1, ServerError("x", status=500))))
    chain = Chain([a], retry=RetryPolicy(wait_initial=10.0, jitter=0.0), scheduler=sched)
    results = sched.start(lambda: chain.stream(REQ), disposed=205)
    assert results.messages == []
    sched.advance_to(400)
    assert a.requests == 1


def test_last_provider_waits_for_retry_after_within_the_cap() -> None:
    """With no other provider, a Retry-After within max_retry_after is slept."""
    sched = TestScheduler()
    slow = RateLimited("slow", status=429, retry_after=2.0)
    good = sched.create_cold_observable(on_next(1, T[3]), on_completed(2))
    a = Fake("a", sched.create_cold_observable(on_error(1, slow)), good)
    chain = Chain([a], scheduler=sched)
    results = sched.start(lambda: chain.stream(REQ))
    assert results.messages == [on_next(204, T[3]), on_completed(205)]


def test_retry_after_above_the_cap_is_not_slept() -> None:
    """A Retry-After above max_retry_after gives up on the provider at once."""
    sched = TestScheduler()
    slow = RateLimited("tomorrow", status=429, retry_after=3600.0)
    a = Fake("a", sched.create_cold_observable(on_error(1, slow)))
    chain = Chain([a], retry=RetryPolicy(max_retry_after=120.0), scheduler=sched)
    results = sched.start(lambda: chain.stream(REQ))
    assert isinstance(error_of(results), AllProvidersFailed)
    assert results.messages[-1].time == 201
    assert a.requests == 1


def test_long_retry_after_falls_over_when_another_provider_is_available() -> None:
    """A Retry-After: 30 (beyond wait_max) is not slept while B can answer."""
    sched = TestScheduler()
    slow = RateLimited("busy", status=429, retry_after=30.0)
    a = Fake("a", sched.create_cold_observable(on_error(1, slow)))
    b = Fake("b", ok_b(sched))
    chain = Chain([a, b], scheduler=sched)
    results = sched.start(lambda: chain.stream(REQ))
    assert results.messages[0].time == 203
    assert a.requests == 1


def test_breakers_are_shared_between_chains() -> None:
    """Two chains using provider "a" share one breaker: one trips it for both."""
    sched = TestScheduler()
    a = Fake("a", sched.create_cold_observable(on_error(1, ServerError("x", status=503))))
    b = Fake("b", ok_b(sched))
    policy = BreakerPolicy(failure_threshold=1)
    one = Chain([a, b], retry=None, breaker=policy, scheduler=sched)
    two = Chain([a, b], retry=None, breaker=policy, scheduler=sched)
    run_at(sched, 200, one.stream(REQ))
    skipped = run_at(sched, 210, two.stream(REQ))
    sched.advance_to(220)
    assert a.requests == 1
    assert values(skipped) == [SB, T[0], T[1], STOP]
    breaker = get_breaker("a")
    assert breaker is not None
    assert state(breaker) == "open"


def test_failed_attempt_lifecycle_frames_never_reach_the_consumer() -> None:
    """A's Started and Usage, sent before it failed, are never shown."""
    sched = TestScheduler()
    a = Fake(
        "a",
        sched.create_cold_observable(
            on_next(1, SA), on_next(2, Usage(input_tokens=1)), on_error(3, ConnectionLost("x"))
        ),
    )
    b = Fake("b", ok_b(sched))
    chain = Chain([a, b], retry=None, scheduler=sched)
    results = sched.start(lambda: chain.stream(REQ))
    assert values(results) == [SB, T[0], T[1], STOP]


def test_no_secret_in_the_final_error() -> None:
    """AllProvidersFailed's text, repr, attempts and pickle carry no API key."""
    sched = TestScheduler()
    foreign = ConnectionRefusedError(f"refused (key {KEY})")  # not an rxllm error
    a = Fake("a", sched.create_cold_observable(on_error(1, ConnectError(f"refused {KEY}"))))
    b = Fake(
        "b",
        sched.create_cold_observable(
            on_error(1, AuthenticationError(f"bad key {KEY}", status=401))
        ),
    )
    c = Fake("c", sched.create_cold_observable(on_error(1, foreign)))
    chain = Chain([a, b, c], retry=None, scheduler=sched)
    results = sched.start(lambda: chain.stream(REQ))
    error = error_of(results)
    assert isinstance(error, AllProvidersFailed)
    assert [t.kind for t in error.attempts] == ["connect", "authentication", "transport"]
    texts = [str(error), repr(error), *(repr(t) for t in error.attempts)]
    assert all(KEY not in text for text in texts)
    assert KEY.encode() not in pickle.dumps(error.attempts)
    assert KEY.encode() not in pickle.dumps(
        AllProvidersFailed(str(error), attempts=error.attempts, errors=error.errors[:2])
    )


def test_providers_satisfy_the_protocol_and_bad_settings_fail() -> None:
    """Fakes are StreamingProviders; empty chains and bad orders are refused."""
    assert isinstance(Fake("a"), StreamingProvider)
    with pytest.raises(ConfigError):
        Chain([])
    with pytest.raises(ConfigError):
        Chain([Fake("a")], order="random")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        Chain([Fake("a")], first_token_timeout=0)
    with pytest.raises(ConfigError):
        RetryPolicy(attempts=0)
    with pytest.raises(ConfigError):
        BreakerPolicy(failure_threshold=None)
    assert repr(Chain([Fake("a"), Fake("b")])) == "Chain(['a', 'b'])"


async def test_chain_on_the_event_loop() -> None:
    """On a real loop (no virtual time) a 429 with Retry-After falls over to B at once."""
    chunks = [_openai_chunk(f"t{i}") for i in range(3)] + [b"data: [DONE]\n\n"]
    a = Replayed(
        "a",
        [b'{"error": {"message": "slow", "type": "rate_limit"}}'],
        status=429,
        headers={"retry-after": "1"},
    )
    b = Replayed("b", chunks)
    response = await rxllm.collect(Chain([a, b]).stream(REQ))
    assert response.text == "t0t1t2"
    assert response.provider == "b"
    assert (a.requests, b.requests) == (1, 1)
