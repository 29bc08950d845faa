"""Small helpers the simulator tests use to call it and cut its bytes apart by hand."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from rxllm.sim import Simulator

PATHS = {
    "openai": "/v1/chat/completions",
    "openai-responses": "/v1/responses",
    "anthropic": "/v1/messages",
    "gemini": "/v1beta/models/{model}:streamGenerateContent?alt=sse",
    "gemini-array": "/v1beta/models/{model}:streamGenerateContent",
    "ollama": "/api/chat",
    "ollama-generate": "/api/generate",
}
ENDPOINTS = tuple(PATHS)


def body_for(endpoint: str, prompt: str = "Hello there", model: str = "m", **extra: Any) -> Any:
    """A minimal streaming request body of ``endpoint``."""
    if endpoint.startswith("gemini"):
        return {"contents": [{"role": "user", "parts": [{"text": prompt}]}], **extra}
    if endpoint == "openai-responses":
        return {"model": model, "input": prompt, "stream": True, **extra}
    if endpoint == "ollama-generate":
        return {"model": model, "prompt": prompt, **extra}
    return {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
        **extra,
    }


def url_for(sim: Simulator, endpoint: str, model: str = "m") -> str:
    """The URL of ``endpoint`` on ``sim`` (the model goes into Gemini's path)."""
    return sim.url + PATHS[endpoint].format(model=model)


async def call(
    http: aiohttp.ClientSession,
    sim: Simulator,
    endpoint: str,
    scenario: dict[str, Any] | None = None,
    *,
    model: str = "m",
    prompt: str = "Hello there",
    **extra: Any,
) -> tuple[int, dict[str, str], bytes]:
    """POST a request and read the whole body: ``(status, headers, body)``."""
    headers = {"x-rxllm-sim": orjson.dumps(scenario).decode()} if scenario else {}
    async with http.post(
        url_for(sim, endpoint, model),
        data=orjson.dumps(body_for(endpoint, prompt, model, **extra)),
        headers={"content-type": "application/json", **headers},
    ) as resp:
        data = await resp.read()
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, data


async def read_raw(
    http: aiohttp.ClientSession, url: str, body: Any, scenario: dict[str, Any]
) -> tuple[bytes, BaseException | None]:
    """POST and read the body as it comes: ``(bytes received, error that ended it)``."""
    got = bytearray()
    try:
        async with http.post(
            url, json=body, headers={"x-rxllm-sim": orjson.dumps(scenario).decode()}
        ) as resp:
            async for chunk in resp.content.iter_any():
                got += chunk
    except aiohttp.ClientError as exc:
        return bytes(got), exc
    return bytes(got), None


def sse_events(data: bytes, sep: bytes = b"\n\n") -> list[tuple[str | None, bytes]]:
    """Cut SSE bytes into ``(event name or None, data)`` pairs, asserting the framing."""
    assert data.endswith(sep), data[-40:]
    out: list[tuple[str | None, bytes]] = []
    line_end = sep[: len(sep) // 2]
    for block in data[: -len(sep)].split(sep):
        lines = block.split(line_end)
        name = None
        if lines[0].startswith(b"event: "):
            name = lines.pop(0)[len(b"event: ") :].decode()
        assert len(lines) == 1, block
        assert lines[0].startswith(b"data: "), block
        out.append((name, lines[0][len(b"data: ") :]))
    return out


def sse_json(data: bytes, sep: bytes = b"\n\n") -> list[tuple[str | None, Any]]:
    """``sse_events`` with each payload parsed as JSON (``[DONE]`` kept as bytes)."""
    return [(n, p if p == b"[DONE]" else orjson.loads(p)) for n, p in sse_events(data, sep)]


def ndjson(data: bytes) -> list[Any]:
    """One JSON object per LF-terminated line."""
    assert data.endswith(b"\n")
    return [orjson.loads(line) for line in data[:-1].split(b"\n")]


def gemini_array(data: bytes) -> list[Any]:
    """The elements of Gemini's streamed JSON array, asserting its exact separators."""
    assert data.startswith(b"[{\n"), data[:10]
    assert data.endswith(b"\n]"), data[-10:]
    parts = data[1:-2].split(b"\n,\r\n")
    for part in parts:
        assert part.startswith(b'{\n  "'), part[:20]
        assert part.endswith(b"}"), part[-20:]
    return [orjson.loads(p) for p in parts]


def payloads(endpoint: str, data: bytes) -> list[bytes]:
    """The raw event payloads of a body of ``endpoint`` (without framing)."""
    if endpoint == "gemini-array":
        body = data[1:] if data.startswith(b"[") else data
        body = body[:-2] if body.endswith(b"\n]") else body
        return body.split(b"\n,\r\n") if body else []
    if endpoint.startswith("ollama"):
        return data.split(b"\n")[:-1]
    sep = b"\r\n\r\n" if endpoint == "gemini" else b"\n\n"
    return [p for _, p in sse_events(data, sep)] if data else []


def parsed(endpoint: str, data: bytes) -> list[Any]:
    """``payloads`` parsed as JSON (``[DONE]`` kept as bytes)."""
    return [p if p == b"[DONE]" else orjson.loads(p) for p in payloads(endpoint, data)]


def is_content(endpoint: str, p: Any) -> bool:
    """Whether payload ``p`` of ``endpoint`` carries content tokens."""
    if not isinstance(p, dict) or ("error" in p and endpoint != "openai-responses"):
        return False
    if endpoint == "openai":
        if not p["choices"]:
            return False
        delta = p["choices"][0]["delta"]
        calls = delta.get("tool_calls") or [{}]
        fragment = calls[0].get("function", {}).get("arguments")
        return bool(delta.get("content") or delta.get("reasoning_content") or fragment)
    if endpoint == "openai-responses":
        return str(p["type"]).endswith(".delta")
    if endpoint == "anthropic":
        delta = p.get("delta", {})
        return p["type"] == "content_block_delta" and any(
            delta.get(k) for k in ("text", "thinking", "partial_json")
        )
    if endpoint.startswith("gemini"):
        candidate = p["candidates"][0]
        parts = candidate["content"]["parts"]
        return "finishReason" not in candidate and any(
            part.get("text") or "functionCall" in part for part in parts
        )
    if endpoint == "ollama":
        m = p["message"]
        return not p["done"] and bool(m["content"] or m.get("thinking") or m.get("tool_calls"))
    return not p["done"] and bool(p["response"])


def is_error(endpoint: str, p: Any) -> bool:
    """Whether payload ``p`` is the in-band error of ``endpoint``."""
    if not isinstance(p, dict):
        return False
    if endpoint in ("openai-responses", "anthropic"):
        return bool(p["type"] == "error")
    return "error" in p


def terminated(endpoint: str, data: bytes) -> bool:
    """Whether the body ends with the provider's terminator."""
    if endpoint == "gemini-array":
        return data.endswith(b"\n]")
    last = parsed(endpoint, data)[-1]
    if endpoint == "openai":
        return bool(last == b"[DONE]")
    if endpoint == "openai-responses":
        return bool(last["type"] in ("response.completed", "response.incomplete"))
    if endpoint == "anthropic":
        return bool(last["type"] == "message_stop")
    if endpoint == "gemini":
        return "finishReason" in last["candidates"][0]
    return bool(last.get("done"))


def streamed_text(endpoint: str, data: bytes) -> str:
    """The answer text a body of ``endpoint`` streams (reasoning and tool calls left out)."""
    out = []
    for p in parsed(endpoint, data):
        if not is_content(endpoint, p):
            continue
        if endpoint == "openai":
            out.append(p["choices"][0]["delta"].get("content") or "")
        elif endpoint == "openai-responses":
            if p["type"] == "response.output_text.delta":
                out.append(p["delta"])
        elif endpoint == "anthropic":
            out.append(p["delta"].get("text", ""))
        elif endpoint.startswith("gemini"):
            parts = p["candidates"][0]["content"]["parts"]
            out.extend(x.get("text", "") for x in parts if not x.get("thought"))
        elif endpoint == "ollama":
            out.append(p["message"]["content"])
        else:
            out.append(p["response"])
    return "".join(out)
