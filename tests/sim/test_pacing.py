"""Pacing, large streams and many concurrent streams (generous time bounds only)."""

from __future__ import annotations

import asyncio
import resource
import time

import aiohttp
import orjson
import pytest

from rxllm.sim import HEADER, Simulator

from ._wire import body_for, call, is_content, parsed, url_for


async def test_first_token_delay_sends_headers_first(
    rxllm_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """Headers and lifecycle events arrive at once; the first content event only after
    first_token_delay."""
    scenario = {"tokens": 3, "first_token_delay": 0.5}
    start = time.monotonic()
    async with http.post(
        url_for(rxllm_sim, "anthropic"),
        json=body_for("anthropic"),
        headers={HEADER: orjson.dumps(scenario).decode()},
    ) as resp:
        headers_at = time.monotonic() - start
        preamble = await resp.content.readuntil(b"event: ping\n")
        preamble_at = time.monotonic() - start
        rest = await resp.content.read()
        content_at = time.monotonic() - start
    assert headers_at < 0.4
    assert preamble_at < 0.4
    assert b"message_start" in preamble
    assert content_at >= 0.5
    assert b"content_block_delta" in rest


async def test_response_delay_holds_the_headers(
    rxllm_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """response_delay waits before the response headers (and before a status fault)."""
    start = time.monotonic()
    status, _, _ = await call(http, rxllm_sim, "ollama", {"response_delay": 0.3, "status": 500})
    assert status == 500
    assert time.monotonic() - start >= 0.3


async def test_tokens_per_second(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """tokens_per_second spaces the content events: 21 tokens at 100/s take at least 0.2 s."""
    start = time.monotonic()
    _, _, data = await call(http, rxllm_sim, "gemini", {"tokens": 21, "tokens_per_second": 100})
    elapsed = time.monotonic() - start
    assert 0.2 <= elapsed < 3.0
    assert sum(is_content("gemini", p) for p in parsed("gemini", data)) == 21


async def test_concurrent_paced_streams(rxllm_sim: Simulator) -> None:
    """250 paced streams run at once and all complete."""
    scenario = orjson.dumps({"tokens": 20, "tokens_per_second": 50}).decode()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def one(i: int) -> int:
            async with http.post(
                url_for(rxllm_sim, "openai"),
                json=body_for("openai", model=f"m{i % 5}"),
                headers={HEADER: scenario},
            ) as resp:
                return len(await resp.read())

        sizes = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(250))), 20)
    assert len(set(sizes)) <= 5  # one size per model name
    assert rxllm_sim.stats.streams_completed == 250
    assert rxllm_sim.stats.peak_active >= 200


@pytest.mark.slow
async def test_request_rate(rxllm_sim: Simulator) -> None:
    """A thousand short streams at 50 at a time finish well within the time bound."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as http:

        async def one() -> None:
            async with http.post(url_for(rxllm_sim, "openai"), json=body_for("openai")) as resp:
                await resp.read()

        start = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(1000))), 20)
    assert rxllm_sim.stats.streams_completed == 1000
    assert time.monotonic() - start < 20


@pytest.mark.slow
async def test_200_mb_stream_is_lazy(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """A 200 MB answer streams through without the simulator holding it in memory."""
    scenario = {"tokens": 50_000_000, "chunk_tokens": 50_000}
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    received = 0
    async with http.post(
        url_for(rxllm_sim, "ollama"),
        json=body_for("ollama"),
        headers={HEADER: orjson.dumps(scenario).decode()},
    ) as resp:
        async for chunk in resp.content.iter_chunked(1 << 20):
            received += len(chunk)
    assert received > 200_000_000
    assert rxllm_sim.stats.bytes_sent == received
    growth_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert growth_mib < 100
