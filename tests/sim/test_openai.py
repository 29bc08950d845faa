"""OpenAI Chat Completions bytes (wire-formats.md 2.1), read raw over loopback HTTP."""

from __future__ import annotations

import aiohttp
import orjson

from rxllm.sim import Simulator, tokenize
from rxllm.wire import encode

from ._wire import call, sse_events, sse_json

TEXT = "Streams need backpressure, or memory grows without bound."


async def test_text_stream_shape(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """A text answer is a role chunk, one chunk per token, a finish chunk, a usage chunk with
    empty choices, then [DONE], every chunk sharing id, object, created and model."""
    status, headers, data = await call(
        http, rxllm_sim, "openai", {"text": TEXT}, stream_options={"include_usage": True}
    )
    assert status == 200
    assert headers["content-type"] == "text/event-stream; charset=utf-8"
    assert headers["x-request-id"].startswith("req_")
    events = sse_json(data)
    assert all(name is None for name, _ in events)
    chunks = [payload for _, payload in events]
    assert chunks[-1] == b"[DONE]"
    chunks = chunks[:-1]
    first, *deltas, finish, usage = chunks
    assert first["choices"] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
    ]
    assert [c["choices"][0]["delta"] for c in deltas] == [{"content": t} for t in tokenize(TEXT)]
    assert all(c["choices"][0]["finish_reason"] is None for c in deltas)
    assert finish["choices"][0]["delta"] == {}
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert usage["choices"] == []
    tokens = len(tokenize(TEXT))
    assert usage["usage"]["completion_tokens"] == tokens
    assert usage["usage"]["prompt_tokens"] == len(tokenize("Hello there"))
    assert usage["usage"]["total_tokens"] == tokens + len(tokenize("Hello there"))
    for c in chunks:
        assert c["object"] == "chat.completion.chunk"
        assert c["model"] == "m"
        assert c["id"] == first["id"]
        assert c["created"] == first["created"]
        assert c["system_fingerprint"] == first["system_fingerprint"]


async def test_framing_matches_wire_encode(
    rxllm_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """Each event is exactly what rxllm.wire.encode writes for its payload."""
    _, _, data = await call(http, rxllm_sim, "openai", {"text": "a\nb\r\nc", "chunk_tokens": 2})
    rebuilt = b"".join(encode(p.decode()) for _, p in sse_events(data))
    assert rebuilt == data
    assert b"data: [DONE]\n\n" in data


async def test_no_usage_chunk_unless_asked(
    rxllm_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """Without stream_options.include_usage the finish chunk is followed by [DONE] only."""
    _, _, data = await call(http, rxllm_sim, "openai", {"text": "Hi"})
    payloads = [p for _, p in sse_json(data)]
    assert payloads[-2]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in p for p in payloads[:-1])


async def test_tool_call_fragments(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """A tool call's first delta has index, id, type, name and empty arguments; later deltas
    only index and a fragment; calls stream one after the other and end with tool_calls."""
    calls = [
        {"name": "get_weather", "arguments": {"city": "Paris", "days": 3}},
        {"name": "get_time", "arguments": {"zone": "Europe/Paris"}},
    ]
    _, _, data = await call(http, rxllm_sim, "openai", {"tool_calls": calls})
    payloads = [p for _, p in sse_json(data)][1:-1]
    deltas = [p["choices"][0]["delta"]["tool_calls"] for p in payloads[:-1]]
    assert all(len(d) == 1 for d in deltas)
    seen: dict[int, list[str]] = {}
    for (d,) in deltas:
        if d["index"] not in seen:
            assert set(d) == {"index", "id", "type", "function"}
            assert d["type"] == "function"
            assert d["id"].startswith("call_")
            assert d["function"]["arguments"] == ""
            assert d["function"]["name"] == calls[d["index"]]["name"]
            seen[d["index"]] = []
        else:
            assert set(d) == {"index", "function"}
            assert set(d["function"]) == {"arguments"}
            seen[d["index"]].append(d["function"]["arguments"])
    assert [d[0]["index"] for d in deltas] == sorted(d[0]["index"] for d in deltas)
    assert {i: orjson.loads("".join(f)) for i, f in seen.items()} == {
        0: calls[0]["arguments"],
        1: calls[1]["arguments"],
    }
    assert payloads[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_reasoning_then_text(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """Reasoning streams as delta.reasoning_content before the content and counts in usage."""
    _, _, data = await call(
        http,
        rxllm_sim,
        "openai",
        {"reasoning": "Think first.", "text": "Answer."},
        stream_options={"include_usage": True},
    )
    payloads = [p for _, p in sse_json(data)][1:-3]
    keys = [next(iter(p["choices"][0]["delta"])) for p in payloads]
    thinking, answer = len(tokenize("Think first.")), len(tokenize("Answer."))
    assert keys == ["reasoning_content"] * thinking + ["content"] * answer
    usage = sse_json(data)[-2][1]["usage"]
    assert usage["completion_tokens"] == thinking + answer
    assert usage["completion_tokens_details"]["reasoning_tokens"] == thinking


async def test_chunk_tokens_groups_tokens(
    rxllm_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """chunk_tokens=4 puts four tokens in each delta; the usage still counts tokens."""
    _, _, data = await call(
        http,
        rxllm_sim,
        "openai",
        {"tokens": 10, "chunk_tokens": 4},
        stream_options={"include_usage": True},
    )
    payloads = [p for _, p in sse_json(data)]
    contents = [p["choices"][0]["delta"]["content"] for p in payloads[1:-3]]
    assert [len(tokenize(c)) for c in contents] == [4, 4, 2]
    assert payloads[-2]["usage"]["completion_tokens"] == 10


async def test_default_answer_is_lorem(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """With no output field the answer is the deterministic lorem text of `tokens` tokens."""
    from rxllm.sim import lorem_text

    _, _, data = await call(http, rxllm_sim, "openai", {"tokens": 12, "seed": 3})
    payloads = [p for _, p in sse_json(data)][1:-2]
    assert "".join(p["choices"][0]["delta"]["content"] for p in payloads) == lorem_text(12, 3)
    assert len(payloads) == 12


async def test_echo_repeats_last_user_message(
    rxllm_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """echo answers with the last user message of the request."""
    _, _, data = await call(http, rxllm_sim, "openai", {"echo": True}, prompt="Say it back")
    payloads = [p for _, p in sse_json(data)][1:-2]
    assert "".join(p["choices"][0]["delta"]["content"] for p in payloads) == "Say it back"


async def test_finish_reason_length(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """finish_reason="length" ends with OpenAI's length reason."""
    _, _, data = await call(http, rxllm_sim, "openai", {"tokens": 2, "finish_reason": "length"})
    assert sse_json(data)[-2][1]["choices"][0]["finish_reason"] == "length"
