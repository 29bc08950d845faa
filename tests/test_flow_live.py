"""Flow control over loopback HTTP: a paused consumer pauses the socket; a hub outlives a
frozen subscriber. The simulator's byte counter and the process's resident memory are the
evidence."""

from __future__ import annotations

import asyncio
import hashlib
import statistics
import time
from typing import Any

import pytest

import rxllm
from rxllm.chain import Chain, RetryPolicy, reset_registry
from rxllm.errors import SlowConsumer
from rxllm.events import TextDelta
from rxllm.hub import Hub
from rxllm.sim import Scenario, Simulator
from rxllm.sim._text import lorem_tokens

MiB = 1024 * 1024
TOKENS = 44_000_000  # about 200 MB of text
CHUNK = 2_000


def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")  # pragma: no cover


def _expected_digest(tokens: int) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    batch: list[str] = []
    for token in lorem_tokens(tokens):
        batch.append(token)
        if len(batch) == 100_000:
            piece = "".join(batch).encode()
            digest.update(piece)
            size += len(piece)
            batch.clear()
    piece = "".join(batch).encode()
    digest.update(piece)
    return digest.hexdigest(), size + len(piece)


async def _consume_with_pause(sim: Simulator, source: Any) -> None:
    """Read everything, pausing 3 s after 20 MB; check the pause stops the sender."""
    digest = hashlib.sha256()
    received = 0
    paused = False
    async for event in rxllm.to_aiter(source, window=64):
        if not isinstance(event, TextDelta):
            continue
        data = event.text.encode()
        digest.update(data)
        received += len(data)
        if not paused and received > 20 * MiB:
            paused = True
            rss_start = _rss()
            await asyncio.sleep(0.5)  # kernel buffers fill up, then the sender blocks
            sent_early = sim.stats.bytes_sent
            await asyncio.sleep(2.5)
            sent_late = sim.stats.bytes_sent
            growth = _rss() - rss_start
            assert sent_late == sent_early, "the simulator kept sending during the pause"
            assert growth < 32 * MiB, f"resident memory grew by {growth / MiB:.1f} MiB"
    expected, size = _expected_digest(TOKENS)
    assert received == size
    assert digest.hexdigest() == expected  # every event, in order, none lost


@pytest.mark.slow
async def test_paused_consumer_pauses_a_200_mb_stream(rxllm_sim: Simulator) -> None:
    """A 200 MB stream: during a 3 s pause memory stays bounded and sending stops; nothing lost."""
    rxllm_sim.set_scenario("big", Scenario(tokens=TOKENS, chunk_tokens=CHUNK))
    gpt = rxllm.provider(
        "openai/big", base_url=rxllm_sim.base_url("openai"), api_key="sk-test-key-0000"
    )
    await _consume_with_pause(rxllm_sim, gpt.stream(rxllm.Request.of("go")))
    assert rxllm_sim.stats.streams_completed == 1


@pytest.mark.slow
async def test_backpressure_holds_through_fallback(rxllm_sim: Simulator) -> None:
    """The same after the first provider failed: the fallback's socket obeys the consumer too."""
    reset_registry()
    rxllm_sim.set_scenario("broken", Scenario(status=503))
    rxllm_sim.set_scenario("big", Scenario(tokens=TOKENS, chunk_tokens=CHUNK))
    chain = Chain(
        [
            rxllm.provider(
                "anthropic/broken",
                base_url=rxllm_sim.base_url("anthropic"),
                api_key="sk-test-key-0000",
            ),
            rxllm.provider(
                "openai/big", base_url=rxllm_sim.base_url("openai"), api_key="sk-test-key-0000"
            ),
        ],
        retry=RetryPolicy(attempts=1),
    )
    await _consume_with_pause(rxllm_sim, chain.stream(rxllm.Request.of("go")))
    assert rxllm_sim.stats.count(model="broken") == 1
    reset_registry()


async def _hub_run(sim: Simulator, *, frozen: bool) -> tuple[list[float], int, bool]:
    """One upstream and 99 reading subscribers (plus a frozen one if asked): their latencies."""
    gpt = rxllm.provider(
        "openai/paced", base_url=sim.base_url("openai"), api_key="sk-test-key-0000"
    )
    published: dict[int, float] = {}

    def stamp(event: Any) -> None:
        published[id(event)] = time.perf_counter()

    source = gpt.stream(rxllm.Request.of("go")).pipe(_tap(stamp))
    latencies: list[float] = []
    counts: list[int] = []
    async with Hub(queue_limit=64) as hub:
        stream_id = await hub.start(source)
        # 99 readers either way; the frozen run adds a 100th subscriber that stops reading.
        listeners = [hub.listen(stream_id, from_start=True) for _ in range(100 if frozen else 99)]

        async def reader(listener: Any) -> None:
            n = 0
            async for stamped in listener:
                latencies.append(time.perf_counter() - published[id(stamped.event)])
                n += 1
            counts.append(n)

        readers = listeners[1:] if frozen else listeners
        tasks = [asyncio.ensure_future(reader(listener)) for listener in readers]
        if frozen:
            await listeners[0].__anext__()  # subscribed, then never reads again
        await asyncio.gather(*tasks)
        dropped = False
        if frozen:
            with pytest.raises(SlowConsumer):
                async for _ in listeners[0]:
                    pass
            dropped = listeners[0].dropped
    assert len(set(counts)) == 1  # every reading subscriber got the same number of events
    return latencies, counts[0], dropped


def _tap(action: Any) -> Any:
    from reactivex import operators as rx_ops

    return rx_ops.do_action(action)


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


@pytest.mark.slow
async def test_hub_frozen_subscriber_does_not_slow_the_others(rxllm_sim: Simulator) -> None:
    """99 readers get everything, p99 latency within 20%; the frozen one is dropped."""
    rxllm_sim.set_scenario("paced", Scenario(tokens=400, tokens_per_second=400))
    base: list[float] = []
    with_frozen: list[float] = []
    for _ in range(5):  # interleaved runs; compare the best p99 of each configuration
        lat, n_base, _ = await _hub_run(rxllm_sim, frozen=False)
        base.append(_p99(lat))
        lat, n_frozen, dropped = await _hub_run(rxllm_sim, frozen=True)
        with_frozen.append(_p99(lat))
        assert dropped
        assert n_frozen == n_base
    assert min(with_frozen) <= 1.2 * min(base), (base, with_frozen)
