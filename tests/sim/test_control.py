"""Scenario choice (per app, per model, per request header), the control routes and the
counters."""

from __future__ import annotations

import asyncio
import itertools
import time

import aiohttp
import orjson
import pytest

from rxllm.sim import HEADER, Scenario, Simulator, create_app, serve

from ._wire import ENDPOINTS, body_for, call, streamed_text, url_for


async def test_model_scenario_and_header_override(
    rxllm_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """A model's scenario applies to its requests; the header's fields override it field by
    field; other models get the default."""
    rxllm_sim.set_scenario("scripted", Scenario(text="from the model", chunk_tokens=2))
    rxllm_sim.set_default({"text": "default"})
    _, _, data = await call(http, rxllm_sim, "openai", model="scripted")
    assert streamed_text("openai", data) == "from the model"
    _, _, data = await call(http, rxllm_sim, "openai", {"text": "from header"}, model="scripted")
    assert streamed_text("openai", data) == "from header"
    assert data.count(b'"content":"from header"') == 1  # chunk_tokens=2 still applies
    _, _, data = await call(http, rxllm_sim, "openai", model="other")
    assert streamed_text("openai", data) == "default"
    rxllm_sim.set_scenario("scripted", None)
    assert "scripted" not in rxllm_sim.scenarios


@pytest.mark.rxllm_sim(scenarios={"*": {"text": "star"}, "x": {"text": "ex"}})
async def test_star_key_is_the_default(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """The "*" key of a scenario mapping is the default scenario."""
    assert streamed_text("anthropic", (await call(http, rxllm_sim, "anthropic", model="y"))[2]) == (
        "star"
    )
    assert streamed_text("anthropic", (await call(http, rxllm_sim, "anthropic", model="x"))[2]) == (
        "ex"
    )


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_bad_header_is_a_provider_shaped_400(
    rxllm_sim: Simulator, http: aiohttp.ClientSession, endpoint: str
) -> None:
    """A header that is not JSON, or names an unknown field, is answered 400 in the
    provider's error shape, naming the header."""
    for value in ("{not json", '{"colour": "red"}', '{"tokens": "many"}'):
        async with http.post(
            url_for(rxllm_sim, endpoint), json=body_for(endpoint), headers={HEADER: value}
        ) as resp:
            assert resp.status == 400
            assert HEADER in (await resp.text())
    assert rxllm_sim.stats.log[-1].outcome == "bad_request"


async def test_body_must_be_a_json_object(
    rxllm_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """A body that is not a JSON object is a 400."""
    async with http.post(url_for(rxllm_sim, "openai"), data=b"[1, 2") as resp:
        assert resp.status == 400
        assert orjson.loads(await resp.read())["error"]["type"] == "invalid_request_error"


async def test_control_routes(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """GET /healthz, GET /sim/stats, POST /sim/scenarios and POST /sim/reset work over HTTP."""
    async with http.get(rxllm_sim.url + "/healthz") as resp:
        assert resp.status == 200
    async with http.post(
        rxllm_sim.url + "/sim/scenarios", json={"slow": {"tokens": 2}, "*": {"tokens": 3}}
    ) as resp:
        assert resp.status == 200
    assert rxllm_sim.scenarios["slow"] == Scenario(tokens=2)
    assert rxllm_sim.default == Scenario(tokens=3)
    async with http.post(rxllm_sim.url + "/sim/scenarios", json={"slow": {"x": 1}}) as resp:
        assert resp.status == 400
    await call(http, rxllm_sim, "ollama", model="slow")
    async with http.get(rxllm_sim.url + "/sim/stats") as resp:
        stats = await resp.json()
    assert stats["requests"] == 1
    assert stats["by_endpoint_model"] == [{"endpoint": "ollama", "model": "slow", "count": 1}]
    assert stats["log"][0]["outcome"] == "completed"
    assert stats["bytes_sent"] == stats["log"][0]["bytes_sent"] > 0
    async with http.post(rxllm_sim.url + "/sim/reset") as resp:
        assert resp.status == 200
    async with http.get(rxllm_sim.url + "/sim/stats?log=0") as resp:
        stats = await resp.json()
    assert stats["requests"] == 0
    assert stats["log"] == []


async def test_counters(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """Requests are counted in total and per (endpoint, model); bytes per request and in
    total equal what the client received; completed streams are counted."""
    sizes = []
    for endpoint, model in [("openai", "a"), ("openai", "a"), ("anthropic", "b"), ("gemini", "c")]:
        _, _, data = await call(http, rxllm_sim, endpoint, model=model)
        sizes.append(len(data))
    stats = rxllm_sim.stats
    assert stats.requests == 4
    assert stats.by_endpoint_model == {
        ("openai", "a"): 2,
        ("anthropic", "b"): 1,
        ("gemini", "c"): 1,
    }
    assert stats.count("openai") == 2
    assert stats.count(model="b") == 1
    assert [r.bytes_sent for r in stats.log] == sizes
    assert stats.bytes_sent == sum(sizes)
    assert stats.streams_completed == 4
    assert [r.seq for r in stats.log] == [1, 2, 3, 4]
    assert len({r.request_id for r in stats.log}) == 4
    assert all(r.body_bytes > 0 for r in stats.log)
    rxllm_sim.reset()
    assert stats.requests == stats.bytes_sent == len(stats.log) == 0


async def test_arrival_times(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """Each request's monotonic and wall arrival times are recorded when it arrives."""
    before = time.time()
    for _ in range(3):
        await call(http, rxllm_sim, "ollama", {"tokens": 1})
        await asyncio.sleep(0.05)
    arrivals = [r.arrival for r in rxllm_sim.stats.log]
    assert all(b - a >= 0.045 for a, b in itertools.pairwise(arrivals))
    walls = [r.arrival_wall for r in rxllm_sim.stats.log]
    assert before <= walls[0] <= walls[-1] <= time.time()


async def test_log_is_bounded() -> None:
    """The request log keeps only the most recent records."""
    async with serve() as sim:
        sim.state.stats.log = type(sim.stats.log)(maxlen=2)
        async with aiohttp.ClientSession() as http:
            for _ in range(4):
                await call(http, sim, "ollama", {"tokens": 1})
        assert [r.seq for r in sim.stats.log] == [3, 4]
        assert sim.stats.requests == 4


async def _read_some_then_close(url: str, scenario: dict[str, object], n: int) -> float:
    """Open a stream, read ``n`` bytes, close the connection; return the close time."""
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            url, json=body_for("openai"), headers={HEADER: orjson.dumps(scenario).decode()}
        )
        await resp.content.readexactly(n)
        resp.close()
        return time.monotonic()


@pytest.mark.parametrize(
    "scenario",
    [
        {"tokens": 1000, "tokens_per_second": 20},
        {"tokens": 10, "stall_after_tokens": 1, "stall_seconds": 30},
        {"tokens": 10, "first_token_delay": 30},
        {"tokens": 10_000_000, "chunk_tokens": 500},
    ],
    ids=["pacing", "stall", "first-token-delay", "backpressure"],
)
async def test_disconnect_noticed_within_a_second(
    rxllm_sim: Simulator, scenario: dict[str, object]
) -> None:
    """A client that closes mid-stream is counted as a disconnect within a second, whether
    the simulator is pacing, stalled, waiting for the first token or blocked on a full
    socket."""
    await _read_some_then_close(url_for(rxllm_sim, "openai"), scenario, 10)
    noticed = await rxllm_sim.stats.wait_for(lambda s: s.disconnects == 1, within=1.0)
    assert noticed
    assert rxllm_sim.stats.log[-1].outcome == "disconnected"
    assert rxllm_sim.stats.active == 0
    assert rxllm_sim.stats.streams_completed == 0


async def test_disconnect_noticed_without_handler_cancellation() -> None:
    """Under a server that does not cancel handlers, the sleeps still notice the client
    leaving within a second (they check the connection)."""
    app = create_app()
    app._handler_args = None  # as a server that never cancels handlers would run it
    runner = aiohttp.web.AppRunner(app, handler_cancellation=False)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        sim = Simulator(app, f"http://127.0.0.1:{port}")
        await _read_some_then_close(
            url_for(sim, "openai"), {"tokens": 10, "stall_after_tokens": 1, "stall_seconds": 30}, 10
        )
        assert await sim.stats.wait_for(lambda s: s.disconnects == 1, within=1.0)
    finally:
        await runner.cleanup()


async def test_backpressure_stops_the_simulator(
    rxllm_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """A client that stops reading stops the simulator: bytes_sent stops growing."""
    scenario = {"tokens": 50_000_000, "chunk_tokens": 1000}
    resp = await http.post(
        url_for(rxllm_sim, "openai"),
        json=body_for("openai"),
        headers={HEADER: orjson.dumps(scenario).decode()},
    )
    try:
        await resp.content.readexactly(1000)
        await asyncio.sleep(0.3)
        first = rxllm_sim.stats.bytes_sent
        await asyncio.sleep(0.3)
        assert rxllm_sim.stats.bytes_sent == first
        assert first < 50_000_000
    finally:
        resp.close()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_same_scenario_same_bytes(endpoint: str) -> None:
    """Two simulators answer the same request with the same bytes, ids included."""
    scenario = {
        "reasoning": "Think.",
        "json_items": 3,
        "tool_calls": [{"name": "f", "arguments": {"a": [1, 2]}}],
        "seed": 5,
        "chunk_tokens": 2,
    }
    bodies = []
    for _ in range(2):
        async with serve() as sim, aiohttp.ClientSession() as http:
            bodies.append((await call(http, sim, endpoint, scenario))[2])
    assert bodies[0] == bodies[1]


async def test_large_header_scenario(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """The x-rxllm-sim header may carry a large scenario (here a 20 kB text)."""
    text = "word " * 4000
    _, _, data = await call(http, rxllm_sim, "ollama", {"text": text, "chunk_tokens": 500})
    assert streamed_text("ollama", data) == text
