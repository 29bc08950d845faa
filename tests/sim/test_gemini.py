"""Gemini streamGenerateContent bytes (wire-formats.md 4), SSE and JSON array."""

from __future__ import annotations

import aiohttp
import orjson

from rxllm.sim import Simulator, tokenize

from ._wire import call, gemini_array, sse_events, sse_json


async def test_sse_crlf_framing_and_usage(
    rxllm_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """alt=sse events end in CRLF CRLF with no [DONE]; usageMetadata carries running values
    on every chunk and the last chunk holds finishReason."""
    status, headers, data = await call(http, rxllm_sim, "gemini", {"text": "One two three"})
    assert status == 200
    assert headers["content-type"] == "text/event-stream"
    assert headers["content-disposition"] == "attachment"
    assert b"\n\n" not in data.replace(b"\r\n\r\n", b"")
    assert b"[DONE]" not in data
    chunks = [p for _, p in sse_json(data, b"\r\n\r\n")]
    counts = [c["usageMetadata"]["candidatesTokenCount"] for c in chunks]
    assert counts == [1, 2, 3, 3]
    prompt = len(tokenize("Hello there"))
    for c in chunks:
        assert c["usageMetadata"]["promptTokenCount"] == prompt
        assert (
            c["usageMetadata"]["totalTokenCount"]
            == prompt + c["usageMetadata"]["candidatesTokenCount"]
        )
        assert c["modelVersion"] == "m"
        assert c["responseId"] == chunks[0]["responseId"]
        assert c["candidates"][0]["content"]["role"] == "model"
    assert all("finishReason" not in c["candidates"][0] for c in chunks[:-1])
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    text = "".join(p["text"] for c in chunks for p in c["candidates"][0]["content"]["parts"])
    assert text == "One two three"


async def test_model_from_path(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """The model named in the URL path picks the scenario and is counted."""
    rxllm_sim.set_scenario("gemini-2.5-flash", {"text": "from the path"})
    _, _, data = await call(http, rxllm_sim, "gemini", model="gemini-2.5-flash")
    chunks = [p for _, p in sse_json(data, b"\r\n\r\n")]
    assert chunks[0]["modelVersion"] == "gemini-2.5-flash"
    assert chunks[0]["candidates"][0]["content"]["parts"][0]["text"] == "from"
    assert rxllm_sim.stats.count("gemini", "gemini-2.5-flash") == 1


async def test_array_separators(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """Without alt=sse the body is one JSON array: 2-space pretty elements separated by
    \\n,\\r\\n, closed by \\n], served as application/json; charset=UTF-8."""
    status, headers, data = await call(http, rxllm_sim, "gemini-array", {"text": "One two"})
    assert status == 200
    assert headers["content-type"] == "application/json; charset=UTF-8"
    elements = gemini_array(data)
    assert orjson.loads(data) == elements
    assert data.startswith(b'[{\n  "candidates": [\n    {\n')
    assert data.count(b"\n,\r\n") == 2
    assert elements[-1]["candidates"][0]["finishReason"] == "STOP"


async def test_thoughts_and_signature(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """Reasoning streams as thought parts, the first answer part carries thoughtSignature,
    and thoughtsTokenCount counts into totalTokenCount."""
    _, _, data = await call(http, rxllm_sim, "gemini", {"reasoning": "Hmm, yes.", "text": "Ok."})
    chunks = [p for _, p in sse_json(data, b"\r\n\r\n")]
    parts = [p for c in chunks for p in c["candidates"][0]["content"]["parts"]]
    thinking = len(tokenize("Hmm, yes."))
    assert all(p.get("thought") is True for p in parts[:thinking])
    assert "".join(p["text"] for p in parts[:thinking]) == "Hmm, yes."
    assert parts[thinking]["thoughtSignature"].startswith("sig_")
    assert sum("thoughtSignature" in p for p in parts) == 1
    last = chunks[-1]["usageMetadata"]
    assert last["thoughtsTokenCount"] == thinking
    assert last["totalTokenCount"] == (
        last["promptTokenCount"] + last["candidatesTokenCount"] + thinking
    )


async def test_function_calls_whole(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """Function calls arrive whole, args as objects, several as parts of one chunk."""
    calls = [
        {"name": "a", "arguments": {"x": 1}},
        {"name": "b", "arguments": {"y": [1, 2]}},
    ]
    _, _, data = await call(http, rxllm_sim, "gemini", {"tool_calls": calls})
    chunks = [p for _, p in sse_json(data, b"\r\n\r\n")]
    assert chunks[0]["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"name": "a", "args": {"x": 1}}},
        {"functionCall": {"name": "b", "args": {"y": [1, 2]}}},
    ]
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"


async def test_errors_sse_and_array(rxllm_sim: Simulator, http: aiohttp.ClientSession) -> None:
    """A status fault answers {"error": {code, message, status}}, array-wrapped on the
    array endpoint."""
    status, headers, data = await call(http, rxllm_sim, "gemini", {"status": 429})
    assert status == 429
    assert headers["content-type"] == "application/json; charset=UTF-8"
    error = orjson.loads(data)["error"]
    assert error["code"] == 429
    assert error["status"] == "RESOURCE_EXHAUSTED"
    status, _, data = await call(
        http, rxllm_sim, "gemini-array", {"status": 503, "error_message": "busy"}
    )
    assert status == 503
    assert orjson.loads(data) == [
        {"error": {"code": 503, "message": "busy", "status": "UNAVAILABLE"}}
    ]


async def test_inband_error_sse_and_array(
    rxllm_sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """An in-band error is an {"error": ...} chunk (SSE) or the array's last element."""
    scenario = {"tokens": 4, "error_after_tokens": 2}
    _, _, data = await call(http, rxllm_sim, "gemini", scenario)
    events = sse_events(data, b"\r\n\r\n")
    assert len(events) == 3
    assert orjson.loads(events[-1][1])["error"]["status"] == "UNAVAILABLE"
    _, _, data = await call(http, rxllm_sim, "gemini-array", scenario)
    elements = gemini_array(data)
    assert len(elements) == 3
    assert elements[-1]["error"]["code"] == 503
    _, _, data = await call(http, rxllm_sim, "gemini-array", {"error_after_tokens": 0})
    assert list(orjson.loads(data)[0]) == ["error"]
