"""Live streams over real loopback HTTP against the simulator, for every dialect.

The first-token rule decides every outcome: a fault before content is the typed error
itself, a fault after content is ``StreamInterrupted`` whose partial text is exactly what the
consumer received, and a body without its terminator is ``IncompleteStream``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

import rxllm
from rxllm.errors import (
    AuthenticationError,
    BadRequest,
    ConnectError,
    ConnectionLost,
    IncompleteStream,
    MalformedFrame,
    Overloaded,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    ReadTimeout,
    ServerError,
    StreamInterrupted,
)
from rxllm.events import Finished, Started, TextDelta, Usage
from rxllm.sim import Simulator

DIALECTS = ["openai", "openai-responses", "anthropic", "gemini", "ollama"]
TEXT = "Streams are sequences of events over time, and rxllm treats them so."


def _provider(
    sim: Simulator, dialect: str, scenario: dict[str, Any] | None = None, **options: Any
) -> rxllm.Provider:
    headers = {"x-rxllm-sim": orjson.dumps(scenario).decode()} if scenario else None
    return rxllm.provider(
        f"{dialect}/sim-model",
        base_url=sim.base_url(dialect),
        api_key="sk-test-key-0000",
        headers=headers,
        **options,
    )


async def _events(source: Any) -> tuple[list[Any], BaseException | None]:
    """Every event the consumer received, and the error that ended the stream, if any."""
    got: list[Any] = []
    try:
        async for event in rxllm.to_aiter(source):
            got.append(event)  # noqa: PERF401 - keep what arrived before an error
    except Exception as exc:
        return got, exc
    return got, None


def _text(events: list[Any]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_text_usage_and_finish(rxllm_sim: Simulator, dialect: str) -> None:
    """Each dialect streams the scripted text with Started first, usage and a stop finish."""
    events, error = await _events(
        _provider(rxllm_sim, dialect, {"text": TEXT}).stream(rxllm.Request.of("hi"))
    )
    assert error is None
    assert isinstance(events[0], Started)
    assert _text(events) == TEXT
    finished = [e for e in events if isinstance(e, Finished)]
    assert [f.reason for f in finished] == ["stop"]
    usage = [e for e in events if isinstance(e, Usage)][-1]
    assert usage.output_tokens is not None
    assert usage.output_tokens > 0
    assert rxllm_sim.stats.streams_completed == 1


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_reasoning_and_tool_calls(rxllm_sim: Simulator, dialect: str) -> None:
    """Reasoning text and tool calls with parsed arguments reach the Response."""
    scenario = {
        "reasoning": "Think first, then answer.",
        "text": "Calling the tool.",
        "tool_calls": [{"name": "lookup", "arguments": {"city": "Zürich", "days": 3}}],
    }
    request = rxllm.Request.of(
        "weather?",
        tools=[{"name": "lookup", "parameters": {"type": "object", "properties": {}}}],
    )
    response = await rxllm.collect(_provider(rxllm_sim, dialect, scenario).stream(request))
    assert response.reasoning == "Think first, then answer."
    assert response.text == "Calling the tool."
    assert [(c.name, c.arguments) for c in response.tool_calls] == [
        ("lookup", {"city": "Zürich", "days": 3})
    ]
    assert response.finish_reason == "tool_calls"


STATUS_CASES = [
    ({"status": 429, "retry_after": 2}, RateLimited, True),
    (
        {
            "status": 429,
            "error_code": "insufficient_quota",
            "error_message": "You exceeded your current quota, please check your plan and "
            "billing details (quota: requests per day).",
        },
        QuotaExhausted,
        False,
    ),
    ({"status": 500}, ServerError, True),
    ({"status": 400}, BadRequest, False),
    ({"status": 401}, AuthenticationError, False),
]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("scenario", "cls", "retryable"), STATUS_CASES)
async def test_status_before_stream_is_a_typed_error(
    rxllm_sim: Simulator,
    dialect: str,
    scenario: dict[str, Any],
    cls: type[ProviderError],
    retryable: bool,
) -> None:
    """An HTTP error status arrives as its typed error, with nothing emitted before it."""
    events, error = await _events(
        _provider(rxllm_sim, dialect, scenario).stream(rxllm.Request.of("hi"))
    )
    assert events == []
    assert isinstance(error, cls), repr(error)
    assert error.retryable is retryable
    assert error.status == scenario["status"]
    if "retry_after" in scenario:
        assert error.retry_after == pytest.approx(2.0)


async def test_anthropic_529_is_overloaded(rxllm_sim: Simulator) -> None:
    """Anthropic's 529 is Overloaded and retryable."""
    _, error = await _events(
        _provider(rxllm_sim, "anthropic", {"status": 529}).stream(rxllm.Request.of("hi"))
    )
    assert isinstance(error, Overloaded)
    assert error.retryable


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_inband_error_before_content_is_the_error_itself(
    rxllm_sim: Simulator, dialect: str
) -> None:
    """An in-band error before any token is the provider error, not an interruption."""
    events, error = await _events(
        _provider(rxllm_sim, dialect, {"text": TEXT, "error_after_tokens": 0}).stream(
            rxllm.Request.of("hi")
        )
    )
    assert _text(events) == ""
    assert isinstance(error, ProviderError), repr(error)
    assert not isinstance(error, StreamInterrupted)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_inband_error_after_content_interrupts_with_exact_partial(
    rxllm_sim: Simulator, dialect: str
) -> None:
    """An in-band error after tokens ends in StreamInterrupted whose partial text is exact."""
    events, error = await _events(
        _provider(rxllm_sim, dialect, {"text": TEXT, "error_after_tokens": 5}).stream(
            rxllm.Request.of("hi")
        )
    )
    assert isinstance(error, StreamInterrupted), repr(error)
    received = _text(events)
    assert received
    assert error.partial.text == received
    assert TEXT.startswith(received)
    assert isinstance(error.cause, ProviderError)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_drop_after_content_interrupts(rxllm_sim: Simulator, dialect: str) -> None:
    """A connection dropped mid-stream after tokens ends in StreamInterrupted (ConnectionLost)."""
    # Big enough to be past the headers and the first tokens of every dialect.
    events, error = await _events(
        _provider(rxllm_sim, dialect, {"tokens": 400, "drop_after_bytes": 3000}).stream(
            rxllm.Request.of("hi")
        )
    )
    assert isinstance(error, StreamInterrupted), repr(error)
    assert error.partial.text == _text(events) != ""
    assert isinstance(error.cause, ConnectionLost | IncompleteStream)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_drop_before_content_is_connection_lost(rxllm_sim: Simulator, dialect: str) -> None:
    """A connection dropped before any token is a plain transport failure, retryable."""
    events, error = await _events(
        _provider(rxllm_sim, dialect, {"text": TEXT, "drop_after_bytes": 1}).stream(
            rxllm.Request.of("hi")
        )
    )
    assert _text(events) == ""
    assert isinstance(error, ConnectionLost | IncompleteStream), repr(error)
    assert not (isinstance(error, StreamInterrupted) and error.partial.text)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_stall_after_content_is_a_read_timeout(rxllm_sim: Simulator, dialect: str) -> None:
    """A stall longer than the idle read timeout after tokens interrupts with ReadTimeout."""
    source = _provider(
        rxllm_sim,
        dialect,
        {"text": TEXT, "stall_after_tokens": 4},
        timeouts=rxllm.Timeouts(connect=5.0, read=0.3),
    ).stream(rxllm.Request.of("hi"))
    events, error = await _events(source)
    assert isinstance(error, StreamInterrupted), repr(error)
    assert isinstance(error.cause, ReadTimeout)
    assert error.partial.text == _text(events) != ""
    assert await rxllm_sim.stats.wait_for(lambda s: s.disconnects == 1, within=1.0)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_malformed_frame(rxllm_sim: Simulator, dialect: str) -> None:
    """A broken frame after tokens interrupts with MalformedFrame as the cause."""
    events, error = await _events(
        _provider(rxllm_sim, dialect, {"text": TEXT, "malformed_at": 6}).stream(
            rxllm.Request.of("hi")
        )
    )
    assert isinstance(error, StreamInterrupted), repr(error)
    assert isinstance(error.cause, MalformedFrame)
    assert error.partial.text == _text(events)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_missing_terminator_is_incomplete(rxllm_sim: Simulator, dialect: str) -> None:
    """A clean close without the provider's terminator is IncompleteStream, never success."""
    events, error = await _events(
        _provider(rxllm_sim, dialect, {"text": TEXT, "no_terminator": True}).stream(
            rxllm.Request.of("hi")
        )
    )
    assert isinstance(error, IncompleteStream), repr(error)
    assert error.partial.text == _text(events) == TEXT


async def test_connect_error_is_typed() -> None:
    """Nothing listening on the port: ConnectError, a ConnectionError, before any event."""
    gpt = rxllm.provider("openai/x", base_url="http://127.0.0.1:9/v1", api_key="sk-none-0000")
    events, error = await _events(gpt.stream(rxllm.Request.of("hi")))
    assert events == []
    assert isinstance(error, ConnectError)
    assert isinstance(error, ConnectionError)


async def test_redirects_are_not_followed(rxllm_sim: Simulator) -> None:
    """A 3xx answer is an error, not a hop to another host with the key."""
    from aiohttp import web

    async def redirect(_: web.Request) -> web.Response:
        raise web.HTTPFound(location=rxllm_sim.base_url("openai") + "/chat/completions")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", redirect)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        gpt = rxllm.provider(
            "openai/x", base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-test-key-0000"
        )
        _, error = await _events(gpt.stream(rxllm.Request.of("hi")))
        assert isinstance(error, ProviderError)
        assert error.status == 302
        assert rxllm_sim.stats.requests == 0
    finally:
        await runner.cleanup()


async def test_break_closes_the_connection_within_a_second(rxllm_sim: Simulator) -> None:
    """Breaking out of to_aiter after three tokens disconnects; no task or connection remains."""
    source = _provider(rxllm_sim, "openai", {"tokens": 500, "tokens_per_second": 20}).stream(
        rxllm.Request.of("hi")
    )
    count = 0
    async for event in rxllm.to_aiter(source):
        if isinstance(event, TextDelta):
            count += 1
            if count == 3:
                break
    assert await rxllm_sim.stats.wait_for(lambda s: s.disconnects == 1, within=1.0)
    for _ in range(5):
        await asyncio.sleep(0)
    leftover = [t for t in asyncio.all_tasks() if t.get_name().startswith("rxllm:")]
    assert leftover == []
    session = rxllm.transport.get_session()
    assert session.connector is not None
    assert sum(len(v) for v in session.connector._conns.values()) == 0
    assert rxllm_sim.stats.streams_completed == 0


async def test_collect_cancelled_closes_the_request(rxllm_sim: Simulator) -> None:
    """Cancelling the task awaiting collect() disposes the subscription and the socket."""
    source = _provider(rxllm_sim, "anthropic", {"tokens": 500, "tokens_per_second": 20}).stream(
        rxllm.Request.of("hi")
    )
    task = asyncio.ensure_future(rxllm.collect(source))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await rxllm_sim.stats.wait_for(lambda s: s.disconnects == 1, within=1.0)


async def test_completed_stream_reuses_its_connection(rxllm_sim: Simulator) -> None:
    """A stream read to the end returns its connection to the pool for the next request."""
    gpt = _provider(rxllm_sim, "openai", {"text": TEXT})
    for _ in range(3):
        assert (await rxllm.collect(gpt.stream(rxllm.Request.of("hi")))).text == TEXT
    session = rxllm.transport.get_session()
    assert session.connector is not None
    assert sum(len(v) for v in session.connector._conns.values()) == 1
