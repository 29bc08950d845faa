"""OpenAI Responses API bytes (wire-formats.md 2.2), read raw over loopback HTTP."""

from __future__ import annotations

import aiohttp
import orjson

from rxllm.sim import Simulator, tokenize

from ._wire import call, sse_json


async def test_lifecycle_and_text(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """Named events (event line == data.type) with increasing sequence_number walk the
    documented lifecycle, and response.completed carries the usage."""
    status, _, data = await call(http, rxllm_sim, "openai-responses", {"text": "Hi there!"})
    assert status == 200
    events = sse_json(data)
    assert all(name == p["type"] for name, p in events)
    assert [p["sequence_number"] for _, p in events] == list(range(len(events)))
    names = [n for n, _ in events]
    n = len(tokenize("Hi there!"))
    assert names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * n,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [p for name, p in events if name == "response.output_text.delta"]
    assert "".join(d["delta"] for d in deltas) == "Hi there!"
    item_id = events[2][1]["item"]["id"]
    assert all(d["item_id"] == item_id and d["output_index"] == 0 for d in deltas)
    assert events[-4][1]["text"] == "Hi there!"
    completed = events[-1][1]["response"]
    assert completed["status"] == "completed"
    assert completed["output"][0]["content"][0]["text"] == "Hi there!"
    usage = completed["usage"]
    assert usage["output_tokens"] == n
    assert usage["total_tokens"] == usage["input_tokens"] + n


async def test_function_call_items(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """A function call is an output item with call_id, argument deltas and a .done with the
    full arguments."""
    scenario = {"tool_calls": [{"name": "sum", "arguments": {"a": 1, "b": 2}}]}
    _, _, data = await call(http, rxllm_sim, "openai-responses", scenario)
    events = sse_json(data)
    added = next(p for n, p in events if n == "response.output_item.added")["item"]
    assert added["type"] == "function_call"
    assert added["arguments"] == ""
    assert added["id"].startswith("fc_")
    assert added["call_id"].startswith("call_")
    deltas = [p["delta"] for n, p in events if n == "response.function_call_arguments.delta"]
    done = next(p for n, p in events if n == "response.function_call_arguments.done")
    assert "".join(deltas) == done["arguments"]
    assert orjson.loads(done["arguments"]) == {"a": 1, "b": 2}
    output = events[-1][1]["response"]["output"]
    assert output[0]["status"] == "completed"
    assert output[0]["name"] == "sum"


async def test_reasoning_item(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """Reasoning is a reasoning item with summary text deltas, before the message item."""
    _, _, data = await call(
        http, rxllm_sim, "openai-responses", {"reasoning": "Because.", "text": "So."}
    )
    events = sse_json(data)
    items = [p["item"]["type"] for n, p in events if n == "response.output_item.added"]
    assert items == ["reasoning", "message"]
    summary = [p["delta"] for n, p in events if n == "response.reasoning_summary_text.delta"]
    assert "".join(summary) == "Because."
    usage = events[-1][1]["response"]["usage"]
    assert usage["output_tokens_details"]["reasoning_tokens"] == len(tokenize("Because."))


async def test_length_is_incomplete(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """finish_reason="length" ends with response.incomplete (max_output_tokens)."""
    _, _, data = await call(
        http, rxllm_sim, "openai-responses", {"tokens": 3, "finish_reason": "length"}
    )
    name, payload = sse_json(data)[-1]
    assert name == "response.incomplete"
    assert payload["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


async def test_errors(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """An in-band error is event: error then response.failed; a status fault is OpenAI's
    error body with retry-after and retry-after-ms."""
    _, _, data = await call(
        http,
        rxllm_sim,
        "openai-responses",
        {"error_after_tokens": 0, "error_code": "insufficient_quota"},
    )
    events = sse_json(data)
    assert [n for n, _ in events][-2:] == ["error", "response.failed"]
    error = events[-2][1]
    assert error["sequence_number"] == 2
    assert error["error"]["code"] == "insufficient_quota"
    assert error["error"]["type"] == "insufficient_quota"
    failed = events[-1][1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "insufficient_quota"
    status, headers, data = await call(
        http, rxllm_sim, "openai-responses", {"status": 503, "retry_after": 0.25}
    )
    assert status == 503
    assert headers["retry-after"] == "0.25"
    assert headers["retry-after-ms"] == "250"
    assert orjson.loads(data)["error"]["type"] == "server_error"
