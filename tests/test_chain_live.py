"""The resilience acceptance list over loopback HTTP; the simulator's counters are the proof."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import rxllm
from rxllm.chain import (
    BreakerPolicy,
    Chain,
    FallbackInfo,
    Hooks,
    RetryInfo,
    RetryPolicy,
    reset_registry,
)
from rxllm.errors import AllProvidersFailed, StreamInterrupted
from rxllm.events import Started, TextDelta
from rxllm.sim import Scenario, Simulator

TEXT_A = "Alpha answers with exactly these words and nothing else at all today."
TEXT_B = "Bravo answers instead, and says so plainly."


@pytest.fixture(autouse=True)
def _fresh_breakers() -> Iterator[None]:
    reset_registry()
    yield
    reset_registry()


def _provider(sim: Simulator, model: str, dialect: str = "openai", **options: Any) -> Any:
    return rxllm.provider(
        f"{dialect}/{model}", base_url=sim.base_url(dialect), api_key="sk-test-key-0000", **options
    )


class Recorder:
    """Collects every hook call."""

    def __init__(self) -> None:
        self.fallbacks: list[FallbackInfo] = []
        self.retries: list[RetryInfo] = []
        self.ends: list[Any] = []

    def hooks(self) -> Hooks:
        return Hooks(
            on_fallback=self.fallbacks.append,
            on_retry=self.retries.append,
            on_request_end=self.ends.append,
        )


async def _run(source: Any) -> tuple[list[Any], BaseException | None]:
    got: list[Any] = []
    try:
        async for event in rxllm.to_aiter(source):
            got.append(event)  # noqa: PERF401 - keep what arrived before an error
    except Exception as exc:
        return got, exc
    return got, None


def _text(events: list[Any]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_429_with_retry_after_falls_over_at_once(rxllm_sim: Simulator) -> None:
    """A 429 with Retry-After: 2 before any byte: B's text only, no sleep on A, one fallback."""
    rxllm_sim.set_scenario("a", Scenario(status=429, retry_after=2))
    rxllm_sim.set_scenario("b", Scenario(text=TEXT_B))
    rec = Recorder()
    chain = Chain(
        [_provider(rxllm_sim, "a"), _provider(rxllm_sim, "b", "anthropic")], hooks=rec.hooks()
    )
    loop = asyncio.get_running_loop()
    start = loop.time()
    events, error = await _run(chain.stream(rxllm.Request.of("hi")))
    elapsed = loop.time() - start
    assert error is None
    assert _text(events) == TEXT_B
    assert [e.provider for e in events if isinstance(e, Started)] == ["anthropic/b"]
    assert len(rec.fallbacks) == 1
    assert rec.fallbacks[0].reason == "rate_limited"
    assert rec.retries == []
    assert elapsed < 2.0  # A's Retry-After was not slept
    assert rxllm_sim.stats.count(model="a") == 1
    assert rxllm_sim.stats.count(model="b") == 1


async def test_503_twice_then_success_with_backoff(rxllm_sim: Simulator) -> None:
    """Two 503s then success: A's stream, after two backoff waits inside the documented bounds."""
    rxllm_sim.set_scenario("a", Scenario(status=503, fail_times=2, text=TEXT_A))
    rec = Recorder()
    policy = RetryPolicy(attempts=3, wait_initial=0.02, wait_max=1.0, jitter=0.5)
    chain = Chain(
        [_provider(rxllm_sim, "a"), _provider(rxllm_sim, "b")], retry=policy, hooks=rec.hooks()
    )
    events, error = await _run(chain.stream(rxllm.Request.of("hi")))
    assert error is None
    assert _text(events) == TEXT_A
    assert rxllm_sim.stats.count(model="a") == 3
    assert rxllm_sim.stats.count(model="b") == 0
    assert [r.attempt for r in rec.retries] == [2, 3]
    for n, info in enumerate(rec.retries):
        base = min(policy.wait_max, policy.wait_initial * 2**n)
        assert (1 - policy.jitter) * base <= info.wait <= base
    arrivals = [r.arrival for r in rxllm_sim.stats.log if r.model == "a"]
    for n in range(2):
        assert arrivals[n + 1] - arrivals[n] >= rec.retries[n].wait * 0.9


async def test_drop_after_content_interrupts_and_never_calls_b(rxllm_sim: Simulator) -> None:
    """A drops after ~40% of its tokens: StreamInterrupted with the exact partial; B untouched."""
    rxllm_sim.set_scenario("a", Scenario(tokens=200, drop_after_bytes=9000))
    chain = Chain([_provider(rxllm_sim, "a"), _provider(rxllm_sim, "b")])
    events, error = await _run(chain.stream(rxllm.Request.of("hi")))
    assert isinstance(error, StreamInterrupted), repr(error)
    received = _text(events)
    assert received
    assert error.partial.text == received
    assert rxllm_sim.stats.count(model="b") == 0
    assert rxllm_sim.stats.count(model="a") == 1


async def test_breaker_trips_skips_a_then_one_probe(rxllm_sim: Simulator) -> None:
    """After the threshold A gets no requests (reason circuit_open); after open_for, one probe."""
    rxllm_sim.set_scenario("a", Scenario(status=500))
    rxllm_sim.set_scenario("b", Scenario(text=TEXT_B))
    rec = Recorder()
    chain = Chain(
        [_provider(rxllm_sim, "a"), _provider(rxllm_sim, "b")],
        retry=RetryPolicy(attempts=1),
        breaker=BreakerPolicy(failure_threshold=3, open_for=0.5, half_open_probes=1),
        hooks=rec.hooks(),
    )
    for _ in range(3):
        events, error = await _run(chain.stream(rxllm.Request.of("hi")))
        assert error is None
        assert _text(events) == TEXT_B
    assert rxllm_sim.stats.count(model="a") == 3
    rec.fallbacks.clear()
    events, _ = await _run(chain.stream(rxllm.Request.of("hi")))
    assert _text(events) == TEXT_B
    assert rxllm_sim.stats.count(model="a") == 3  # no request to A while open
    assert [f.reason for f in rec.fallbacks] == ["circuit_open"]
    await asyncio.sleep(0.6)
    rxllm_sim.set_scenario("a", Scenario(text=TEXT_A, tokens_per_second=50))
    # Two requests at once: exactly one probe reaches A, the other goes to B.
    results = await asyncio.gather(*(_run(chain.stream(rxllm.Request.of("hi"))) for _ in range(2)))
    texts = sorted(_text(events) for events, _ in results)
    assert texts == sorted([TEXT_A, TEXT_B])
    assert rxllm_sim.stats.count(model="a") == 4


async def test_first_token_timeout_falls_over_and_closes_a(rxllm_sim: Simulator) -> None:
    """A silent before its first token times out: B answers, and A's connection is closed."""
    rxllm_sim.set_scenario("a", Scenario(text=TEXT_A, first_token_delay=30))
    rxllm_sim.set_scenario("b", Scenario(text=TEXT_B))
    chain = Chain([_provider(rxllm_sim, "a"), _provider(rxllm_sim, "b")], first_token_timeout=0.3)
    events, error = await _run(chain.stream(rxllm.Request.of("hi")))
    assert error is None
    assert _text(events) == TEXT_B
    assert await rxllm_sim.stats.wait_for(lambda s: s.disconnects == 1, within=1.0)


async def test_idle_stall_after_content_interrupts_and_closes(rxllm_sim: Simulator) -> None:
    """A stall after content ends in StreamInterrupted, and the upstream connection is closed."""
    rxllm_sim.set_scenario("a", Scenario(text=TEXT_A, stall_after_tokens=4))
    chain = Chain([_provider(rxllm_sim, "a"), _provider(rxllm_sim, "b")], idle_timeout=0.3)
    events, error = await _run(chain.stream(rxllm.Request.of("hi")))
    assert isinstance(error, StreamInterrupted), repr(error)
    assert error.partial.text == _text(events) != ""
    assert await rxllm_sim.stats.wait_for(lambda s: s.disconnects == 1, within=1.0)
    assert rxllm_sim.stats.count(model="b") == 0


async def test_all_failing_lists_every_attempt(rxllm_sim: Simulator) -> None:
    """Every provider failing before content: AllProvidersFailed with one entry per attempt."""
    rxllm_sim.set_scenario("a", Scenario(status=503))
    rxllm_sim.set_scenario("b", Scenario(status=401))
    rxllm_sim.set_scenario("c", Scenario(error_after_tokens=0))
    chain = Chain(
        [
            _provider(rxllm_sim, "a"),
            _provider(rxllm_sim, "b", "anthropic"),
            _provider(rxllm_sim, "c", "gemini"),
        ],
        retry=RetryPolicy(attempts=2, wait_initial=0.01, wait_max=0.02),
    )
    events, error = await _run(chain.stream(rxllm.Request.of("hi")))
    assert events == []
    assert isinstance(error, AllProvidersFailed)
    summary = [(a.provider, a.kind, a.status) for a in error.attempts]
    assert summary[:3] == [
        ("openai/a", "server_error", 503),
        ("openai/a", "server_error", 503),
        ("anthropic/b", "authentication", 401),
    ]
    assert [a.provider for a in error.attempts[3:]] == ["gemini/c", "gemini/c"]
    assert all(a.elapsed >= 0 for a in error.attempts)
    assert "sk-test-key" not in str(error) + repr(error.attempts)
    assert rxllm_sim.stats.count() == 5


async def test_bad_request_is_raised_without_fallback(rxllm_sim: Simulator) -> None:
    """A 400 is the request's fault: raised as is, B never called."""
    rxllm_sim.set_scenario("a", Scenario(status=400))
    chain = Chain([_provider(rxllm_sim, "a"), _provider(rxllm_sim, "b")])
    _, error = await _run(chain.stream(rxllm.Request.of("hi")))
    assert isinstance(error, rxllm.errors.BadRequest)
    assert rxllm_sim.stats.count(model="b") == 0
