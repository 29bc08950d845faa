"""Ollama NDJSON bytes (wire-formats.md 5), /api/chat and /api/generate."""

from __future__ import annotations

import aiohttp
import orjson

from rxllm.sim import Simulator, tokenize

from ._wire import call, ndjson


async def test_chat_lines(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """Chat streams one object per line: thinking, content, whole tool calls with object
    arguments, then a done line with counts and nanosecond durations."""
    scenario = {
        "reasoning": "Think.",
        "text": "Sure thing.",
        "tool_calls": [{"name": "f", "arguments": {"k": "v"}}],
        "tokens_per_second": 1000,
    }
    status, headers, data = await call(http, rxllm_sim, "ollama", scenario)
    assert status == 200
    assert headers["content-type"] == "application/x-ndjson"
    assert data.count(b"\n") == len(data.splitlines())
    lines = ndjson(data)
    thinking, text = len(tokenize("Think.")), len(tokenize("Sure thing."))
    assert all(line["model"] == "m" and "created_at" in line for line in lines)
    assert all(line["done"] is False for line in lines[:-1])
    messages = [line["message"] for line in lines[:-1]]
    assert all(m["role"] == "assistant" for m in messages)
    assert "".join(m["thinking"] for m in messages[:thinking]) == "Think."
    assert "".join(m["content"] for m in messages[thinking:-1]) == "Sure thing."
    call_line = messages[-1]
    assert call_line["content"] == ""
    assert call_line["tool_calls"][0]["function"]["name"] == "f"
    assert call_line["tool_calls"][0]["function"]["arguments"] == {"k": "v"}
    done = lines[-1]
    args = len(tokenize('{"k":"v"}'))
    assert done["done"] is True
    assert done["done_reason"] == "stop"
    assert done["eval_count"] == thinking + text + args
    assert done["prompt_eval_count"] == len(tokenize("Hello there"))
    assert done["eval_duration"] == done["eval_count"] * 1_000_000
    assert done["total_duration"] == (
        done["load_duration"] + done["prompt_eval_duration"] + done["eval_duration"]
    )


async def test_generate_lines(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """/api/generate lines carry response fragments and end with done: true."""
    _, _, data = await call(http, rxllm_sim, "ollama-generate", {"text": "Hi there"})
    lines = ndjson(data)
    assert "".join(line["response"] for line in lines) == "Hi there"
    assert lines[-1]["done"] is True
    assert lines[-1]["response"] == ""
    assert rxllm_sim.stats.count("ollama-generate") == 1


async def test_errors(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """Status faults answer {"error": "..."}; an in-band error is an error line at 200."""
    status, _, data = await call(http, rxllm_sim, "ollama", {"status": 404}, model="nope")
    assert status == 404
    assert orjson.loads(data) == {"error": 'model "nope" not found, try pulling it first'}
    status, _, data = await call(
        http, rxllm_sim, "ollama", {"tokens": 3, "error_after_tokens": 1, "error_message": "boom"}
    )
    assert status == 200
    lines = ndjson(data)
    assert len(lines) == 2
    assert lines[-1] == {"error": "boom"}
