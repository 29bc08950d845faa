"""Every fault kind on every endpoint, read raw over loopback HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import pytest

from rxllm.sim import Simulator, tokenize

from ._wire import (
    ENDPOINTS,
    body_for,
    call,
    is_content,
    is_error,
    parsed,
    payloads,
    read_raw,
    terminated,
    url_for,
)

STATUS_SHAPES: dict[str, Callable[[Any], bool]] = {
    "openai": lambda b: set(b["error"]) == {"message", "type", "param", "code"},
    "openai-responses": lambda b: set(b["error"]) == {"message", "type", "param", "code"},
    "anthropic": lambda b: b["type"] == "error" and set(b["error"]) == {"type", "message"},
    "gemini": lambda b: set(b["error"]) == {"code", "message", "status"},
    "gemini-array": lambda b: set(b[0]["error"]) == {"code", "message", "status"},
    "ollama": lambda b: isinstance(b["error"], str),
    "ollama-generate": lambda b: isinstance(b["error"], str),
}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_healthy_stream_is_terminated(
    rxllm_sim: Simulator, http: aiohttp.ClientSession, endpoint: str
) -> None:
    """Without faults every endpoint ends with its terminator and streams every token."""
    status, _, data = await call(http, rxllm_sim, endpoint, {"tokens": 7})
    assert status == 200
    assert terminated(endpoint, data)
    assert sum(is_content(endpoint, p) for p in parsed(endpoint, data)) == 7


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_status_fault(
    rxllm_sim: Simulator, http: aiohttp.ClientSession, endpoint: str
) -> None:
    """status sends the provider's error body before any stream byte, with retry-after
    (and retry-after-ms on OpenAI) and the x-request-id it logged."""
    status, headers, data = await call(
        http, rxllm_sim, endpoint, {"status": 503, "retry_after": 1.5}
    )
    assert status == 503
    assert headers["content-type"].startswith("application/json")
    assert STATUS_SHAPES[endpoint](orjson.loads(data))
    assert headers["retry-after"] == "1.5"
    assert ("retry-after-ms" in headers) == endpoint.startswith("openai")
    if "retry-after-ms" in headers:
        assert headers["retry-after-ms"] == "1500"
    record = rxllm_sim.stats.log[-1]
    assert record.status == 503
    assert record.outcome == "error_status"
    assert record.request_id == headers["x-request-id"]
    assert rxllm_sim.stats.faults["status"] == 1


async def test_openai_quota_429(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """error_code insufficient_quota turns a 429 into OpenAI's quota error."""
    _, _, data = await call(
        http, rxllm_sim, "openai", {"status": 429, "error_code": "insufficient_quota"}
    )
    error = orjson.loads(data)["error"]
    assert error["code"] == error["type"] == "insufficient_quota"
    assert "quota" in error["message"]
    _, _, data = await call(http, rxllm_sim, "openai", {"status": 429})
    assert orjson.loads(data)["error"]["code"] == "rate_limit_exceeded"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("after", [0, 3])
async def test_error_after_tokens(
    rxllm_sim: Simulator, http: aiohttp.ClientSession, endpoint: str, after: int
) -> None:
    """error_after_tokens=N sends exactly N content tokens, then the in-band error in the
    provider's shape, with status 200 and no terminator."""
    status, _, data = await call(
        http, rxllm_sim, endpoint, {"tokens": 8, "error_after_tokens": after}
    )
    assert status == 200
    events = parsed(endpoint, data)
    assert sum(is_content(endpoint, p) for p in events) == after
    errors = [i for i, p in enumerate(events) if is_error(endpoint, p)]
    assert len(errors) == 1
    tail = {
        "openai": [b"[DONE]"],
        "openai-responses": ["response.failed"],
    }.get(endpoint, [])
    rest = [p if isinstance(p, bytes) else p.get("type") for p in events[errors[0] + 1 :]]
    assert rest == tail
    assert rxllm_sim.stats.faults["error"] == 1
    assert rxllm_sim.stats.streams_completed == 1


async def test_error_boundary_cuts_a_chunk(
    rxllm_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """With chunk_tokens=2 and error_after_tokens=3 the chunks are 2 then 1 tokens."""
    scenario = {"tokens": 8, "chunk_tokens": 2, "error_after_tokens": 3}
    _, _, data = await call(http, rxllm_sim, "openai", scenario)
    events = parsed("openai", data)
    texts = [p["choices"][0]["delta"]["content"] for p in events if is_content("openai", p)]
    assert [len(tokenize(t)) for t in texts] == [2, 1]
    assert "error" in events[-2]
    assert events[-1] == b"[DONE]"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_drop_after_bytes(
    rxllm_sim: Simulator, http: aiohttp.ClientSession, endpoint: str
) -> None:
    """drop_after_bytes=N delivers exactly the first N bytes of the stream, then the
    connection breaks mid-body."""
    _, _, full = await call(http, rxllm_sim, endpoint, {"tokens": 20})
    cut = len(full) // 2
    scenario = {"tokens": 20, "drop_after_bytes": cut}
    got, error = await read_raw(http, url_for(rxllm_sim, endpoint), body_for(endpoint), scenario)
    assert isinstance(error, aiohttp.ClientPayloadError)
    assert got == full[:cut]
    record = rxllm_sim.stats.log[-1]
    assert record.outcome == "dropped"
    assert record.bytes_sent == cut
    assert rxllm_sim.stats.faults["drop"] == 1


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_malformed_event(
    rxllm_sim: Simulator, http: aiohttp.ClientSession, endpoint: str
) -> None:
    """malformed_at=K breaks the JSON of event K only; the framing stays intact."""
    _, _, data = await call(http, rxllm_sim, endpoint, {"tokens": 6, "malformed_at": 2})
    raw = payloads(endpoint, data)
    for i, payload in enumerate(raw):
        if i == 2:
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(payload)
        elif payload != b"[DONE]":
            orjson.loads(payload)
    assert rxllm_sim.stats.faults["malformed"] == 1


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_no_terminator(
    rxllm_sim: Simulator, http: aiohttp.ClientSession, endpoint: str
) -> None:
    """no_terminator ends the body cleanly right after the content, without the closing
    events: its bytes are a prefix of the full stream's."""
    _, _, full = await call(http, rxllm_sim, endpoint, {"tokens": 5})
    status, _, data = await call(http, rxllm_sim, endpoint, {"tokens": 5, "no_terminator": True})
    assert status == 200
    assert not terminated(endpoint, data)
    assert full.startswith(data)
    events = parsed(endpoint, data)
    assert is_content(endpoint, events[-1])
    assert sum(is_content(endpoint, p) for p in events) == 5


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_stall(rxllm_sim: Simulator, http: aiohttp.ClientSession, endpoint: str) -> None:
    """stall_after_tokens pauses the stream with the connection open, then it goes on."""
    start = time.monotonic()
    status, _, data = await call(
        http, rxllm_sim, endpoint, {"tokens": 4, "stall_after_tokens": 2, "stall_seconds": 0.3}
    )
    assert time.monotonic() - start >= 0.3
    assert status == 200
    assert terminated(endpoint, data)
    assert rxllm_sim.stats.faults["stall"] == 1


async def test_stall_happens_after_n_tokens(
    rxllm_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """The bytes that arrive before the stall hold exactly stall_after_tokens tokens."""
    scenario = {"tokens": 6, "stall_after_tokens": 3, "stall_seconds": 5.0}
    async with http.post(
        url_for(rxllm_sim, "openai"),
        json=body_for("openai"),
        headers={"x-rxllm-sim": orjson.dumps(scenario).decode()},
    ) as resp:
        got = b""
        while got.count(b"\n\n") < 4:  # the role chunk and three tokens
            got += await asyncio.wait_for(resp.content.readany(), 2)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(resp.content.readany(), 0.3)
    assert sum(is_content("openai", p) for p in parsed("openai", got)) == 3


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_fail_times(rxllm_sim: Simulator, http: aiohttp.ClientSession, endpoint: str) -> None:
    """fail_times=2 answers the first two requests of the scenario key with the fault and
    the third with a normal stream."""
    rxllm_sim.set_scenario("flaky", {"status": 503, "fail_times": 2, "tokens": 3})
    statuses = [(await call(http, rxllm_sim, endpoint, model="flaky"))[0] for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert [r.faults for r in rxllm_sim.stats.log] == [True, True, False]
    rxllm_sim.reset()
    assert (await call(http, rxllm_sim, endpoint, model="flaky"))[0] == 503


async def test_fail_times_counts_per_key(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """Each model, and each header value, is its own fail_times key; fail_key shares one."""
    scenario = {"status": 500, "fail_times": 1}
    assert (await call(http, rxllm_sim, "openai", scenario, model="a"))[0] == 500
    assert (await call(http, rxllm_sim, "openai", scenario, model="b"))[0] == 500
    assert (await call(http, rxllm_sim, "openai", scenario, model="a"))[0] == 200
    shared = {**scenario, "fail_key": "k"}
    assert (await call(http, rxllm_sim, "openai", shared, model="c"))[0] == 500
    assert (await call(http, rxllm_sim, "anthropic", shared, model="d"))[0] == 200


async def test_fail_times_covers_inband_faults(
    rxllm_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """fail_times also switches off in-band faults once used up."""
    scenario = {"error_after_tokens": 1, "fail_times": 1, "tokens": 3}
    _, _, first = await call(http, rxllm_sim, "anthropic", scenario)
    _, _, second = await call(http, rxllm_sim, "anthropic", scenario)
    assert not terminated("anthropic", first)
    assert terminated("anthropic", second)


async def test_drop_before_any_body_byte(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """drop_after_bytes=0 sends the headers, then closes without a body byte."""
    got, error = await read_raw(
        http, url_for(rxllm_sim, "anthropic"), body_for("anthropic"), {"drop_after_bytes": 0}
    )
    assert got == b""
    assert isinstance(error, aiohttp.ClientPayloadError)
    assert rxllm_sim.stats.log[-1].outcome == "dropped"
