"""Anthropic Messages bytes (wire-formats.md 3), read raw over loopback HTTP."""

from __future__ import annotations

import re

import aiohttp
import orjson

from rxllm.sim import Simulator, tokenize
from rxllm.wire import encode

from ._wire import call, sse_events, sse_json


async def test_event_order_and_names(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """Thinking, text and tool_use blocks stream in order between message_start and
    message_stop, each event's name repeating its data.type."""
    scenario = {
        "reasoning": "Let me think.",
        "text": "Here you go.",
        "tool_calls": [{"name": "lookup", "arguments": {"q": "rivers of Europe"}}],
        "ping_every": 0,
    }
    status, headers, data = await call(http, rxllm_sim, "anthropic", scenario)
    assert status == 200
    assert headers["content-type"] == "text/event-stream; charset=utf-8"
    assert headers["request-id"] == headers["x-request-id"]
    events = sse_json(data)
    for name, payload in events:
        assert name == payload["type"]
    names = [n for n, _ in events]
    thinking, text, args = (
        len(tokenize("Let me think.")),
        len(tokenize("Here you go.")),
        len(tokenize('{"q":"rivers of Europe"}')),
    )
    assert names == (
        ["message_start", "ping"]
        + ["content_block_start"]
        + ["content_block_delta"] * (thinking + 1)
        + ["content_block_stop", "content_block_start"]
        + ["content_block_delta"] * text
        + ["content_block_stop", "content_block_start"]
        + ["content_block_delta"] * (args + 1)
        + ["content_block_stop", "message_delta", "message_stop"]
    )
    start = events[0][1]["message"]
    assert start["content"] == []
    assert start["stop_reason"] is None
    assert start["usage"]["output_tokens"] == 1
    assert start["usage"]["input_tokens"] == len(tokenize("Hello there"))
    blocks = [p["content_block"] for n, p in events if n == "content_block_start"]
    assert blocks[0] == {"type": "thinking", "thinking": "", "signature": ""}
    assert blocks[1] == {"type": "text", "text": ""}
    assert blocks[2]["type"] == "tool_use"
    assert blocks[2]["input"] == {}
    assert blocks[2]["id"].startswith("toolu_")
    assert blocks[2]["name"] == "lookup"
    deltas = [p for n, p in events if n == "content_block_delta"]
    by_index: dict[int, list[dict[str, str]]] = {}
    for d in deltas:
        by_index.setdefault(d["index"], []).append(d["delta"])
    assert [d["type"] for d in by_index[0]][-1] == "signature_delta"
    assert "".join(d["thinking"] for d in by_index[0][:-1]) == "Let me think."
    assert "".join(d["text"] for d in by_index[1]) == "Here you go."
    fragments = [d["partial_json"] for d in by_index[2]]
    assert fragments[0] == ""
    assert orjson.loads("".join(fragments)) == {"q": "rivers of Europe"}
    message_delta = events[-2][1]
    assert message_delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert message_delta["usage"]["output_tokens"] == thinking + text + args


async def test_padded_json_and_pings(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """Some payloads carry spaces before their final brace, pings use the API's spacing, and
    a ping comes after every ping_every deltas, inside the block."""
    _, _, data = await call(http, rxllm_sim, "anthropic", {"tokens": 9, "ping_every": 4})
    raw = sse_events(data)
    padded = [p for _, p in raw if re.search(rb"[^ ] +}$", p)]
    assert {orjson.loads(p)["type"] for p in padded} >= {
        "message_start",
        "content_block_stop",
        "message_delta",
        "message_stop",
    }
    assert (b'event: ping\ndata: {"type": "ping"}\n\n') in data
    names = [n for n, _ in raw]
    assert names.count("ping") == 1 + 2
    assert names.index("ping", 2) > names.index("content_block_start")


async def test_framing_matches_wire_encode(
    rxllm_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """Each event is exactly what rxllm.wire.encode writes for its name and payload."""
    _, _, data = await call(http, rxllm_sim, "anthropic", {"reasoning": "Hm.", "tokens": 3})
    rebuilt = b"".join(encode(p.decode(), event=n) for n, p in sse_events(data))
    assert rebuilt == data


async def test_usage_is_cumulative(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """message_delta reports the cumulative output tokens and repeats the input tokens."""
    _, _, data = await call(http, rxllm_sim, "anthropic", {"tokens": 17, "prompt_tokens": 42})
    delta = next(p for n, p in sse_json(data) if n == "message_delta")
    assert delta["usage"]["output_tokens"] == 17
    assert delta["usage"]["input_tokens"] == 42


async def test_status_error_body(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """A 529 fault answers Anthropic's error body with a request-id header."""
    status, headers, data = await call(
        http, rxllm_sim, "anthropic", {"status": 529, "retry_after": 2}
    )
    assert status == 529
    body = orjson.loads(data)
    assert body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
        "request_id": headers["request-id"],
    }
    assert headers["retry-after"] == "2"
    assert "retry-after-ms" not in headers


async def test_spend_limit_code_goes_to_details(
    rxllm_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """An error_code that is not an error type lands in error.details.error_code."""
    _, _, data = await call(
        http,
        rxllm_sim,
        "anthropic",
        {"status": 429, "error_code": "enforced_spend_limit_reached"},
    )
    error = orjson.loads(data)["error"]
    assert error["type"] == "rate_limit_error"
    assert error["details"] == {"error_code": "enforced_spend_limit_reached"}


async def test_inband_error_then_close(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """An in-band error is an overloaded_error event and the stream ends without
    message_stop."""
    _, headers, data = await call(
        http, rxllm_sim, "anthropic", {"tokens": 5, "error_after_tokens": 2}
    )
    events = sse_json(data)
    name, payload = events[-1]
    assert name == "error"
    assert payload == {
        "type": "error",
        "error": {"details": None, "type": "overloaded_error", "message": "Overloaded"},
        "request_id": headers["request-id"],
    }
    assert sum(1 for n, _ in events if n == "content_block_delta") == 2
    assert "message_stop" not in [n for n, _ in events]
