"""Hostile servers and secrets: bounded memory on a giant line, and no key anywhere."""

from __future__ import annotations

import asyncio
import logging
import pickle
import tracemalloc
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

import rxllm
from rxllm.errors import FrameTooLarge, RxllmError, StreamInterrupted
from rxllm.sim import Scenario, Simulator

MiB = 1024 * 1024


@pytest.fixture
async def hostile() -> AsyncIterator[tuple[str, dict[str, int]]]:
    """A server whose SSE answer is one 10 MiB line with no newline."""
    sent = {"bytes": 0}

    async def giant_line(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: ")
        block = b"x" * (64 * 1024)
        try:
            for _ in range(160):  # 10 MiB
                await response.write(block)
                sent["bytes"] += len(block)
        except (ConnectionError, asyncio.CancelledError):
            pass
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", giant_line)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/v1", sent
    await runner.cleanup()


async def test_ten_mib_line_is_a_clear_error_with_bounded_memory(
    hostile: tuple[str, dict[str, int]],
) -> None:
    """A 10 MiB SSE line ends in FrameTooLarge at the 1 MiB bound, with client memory bounded."""
    base_url, sent = hostile
    gpt = rxllm.provider("openai/x", base_url=base_url, api_key="sk-test-key-0000")
    tracemalloc.start()
    try:
        with pytest.raises(FrameTooLarge) as info:
            await rxllm.collect(gpt.stream(rxllm.Request.of("hi")))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.limit == rxllm.wire.DEFAULT_MAX_EVENT_BYTES
    assert "longer than" in str(info.value)
    assert peak < 6 * MiB, f"peak {peak / MiB:.1f} MiB"
    await asyncio.sleep(0.2)
    assert sent["bytes"] < 10 * MiB  # the client hung up long before the end


CANARY = "sk-canary-" + "Zq7" * 12


async def _outcomes(sim: Simulator, key_in_env: bool) -> list[object]:
    """Run streams that succeed and fail in every way, collecting what a user could see."""
    seen: list[object] = []
    options = {} if key_in_env else {"api_key": CANARY}

    def make(scenario: dict[str, object] | None, dialect: str = "openai") -> rxllm.Provider:
        # The scenario goes to the simulator by model name, so the canary in an error
        # message travels only the way a real provider's would: in the response.
        model = f"m{len(seen)}"
        if scenario:
            sim.set_scenario(model, Scenario.from_mapping(scenario))
        return rxllm.provider(f"{dialect}/{model}", base_url=sim.base_url(dialect), **options)

    echoed = f"Incorrect API key provided: {CANARY}. Find your key at ..."
    scenarios: list[tuple[str, dict[str, object] | None]] = [
        ("openai", None),
        ("openai", {"status": 401, "error_message": echoed}),
        ("anthropic", {"status": 401, "error_message": echoed}),
        ("gemini", {"status": 400, "error_message": echoed}),
        ("openai", {"tokens": 20, "error_after_tokens": 3, "error_message": echoed}),
        ("anthropic", {"tokens": 20, "drop_after_bytes": 1500}),
    ]
    for dialect, scenario in scenarios:
        p = make(scenario, dialect)
        seen += [repr(p), pickle.dumps(p)]
        call = p.dialect.build_call(
            rxllm.Request.of("x"), model="m", base_url=p.base_url, api_key=CANARY
        )
        seen.append(repr(call))
        try:
            seen.append(repr(await rxllm.collect(p.stream(rxllm.Request.of("hi")))))
        except RxllmError as exc:
            seen += [str(exc), repr(exc), pickle.dumps(exc), exc.args]
            cause = exc.__cause__
            if isinstance(exc, StreamInterrupted):
                seen += [repr(exc.partial), str(exc.cause), repr(exc.cause)]
            if cause is not None:
                seen += [str(cause), repr(cause)]
    unreachable = rxllm.provider("openai/m", base_url="http://127.0.0.1:9/v1", **options)
    try:
        await rxllm.collect(unreachable.stream(rxllm.Request.of("hi")))
    except RxllmError as exc:
        seen += [str(exc), repr(exc), pickle.dumps(exc)]
    return seen


@pytest.mark.parametrize("key_in_env", [False, True])
async def test_canary_key_never_leaks(
    rxllm_sim: Simulator,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    key_in_env: bool,
) -> None:
    """A canary API key appears in no log record (DEBUG), error text, repr or pickle."""
    if key_in_env:
        for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
            monkeypatch.setenv(var, CANARY)
    caplog.set_level(logging.DEBUG)
    seen = await _outcomes(rxllm_sim, key_in_env)
    assert len(seen) > 30
    blob = b"".join(item if isinstance(item, bytes) else repr(item).encode() for item in seen)
    assert CANARY.encode() not in blob
    assert "Zq7Zq7Zq7" not in blob.decode("latin-1")
    for record in caplog.records:
        assert CANARY not in record.getMessage()
        assert CANARY not in repr(record.args)
    assert any(r.name.startswith("rxllm") for r in caplog.records)  # DEBUG logging did run


def test_provider_pickle_drops_an_explicit_key() -> None:
    """An unpickled provider has no explicit key or auth header; it reads the environment."""
    p = rxllm.provider(
        "openai/m", api_key=CANARY, headers={"Authorization": f"Bearer {CANARY}", "X-Team": "a"}
    )
    data = pickle.dumps(p)
    assert CANARY.encode() not in data
    clone = pickle.loads(data)
    assert clone._key() is None
    assert clone.headers == {"X-Team": "a"}
    assert clone.name == p.name
    assert clone.base_url == p.base_url
