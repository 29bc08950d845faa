"""The Ollama native dialect (/api/chat and /api/generate NDJSON, wire-formats.md 5)."""

from __future__ import annotations

import pickle
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rxllm
from rxllm.errors import (
    AuthenticationError,
    BadRequest,
    ConfigError,
    FrameTooLarge,
    IncompleteStream,
    MalformedFrame,
    Overloaded,
    ProviderError,
    RateLimited,
    RxllmError,
    ServerError,
    StreamInterrupted,
)
from rxllm.events import Finished, ReasoningDelta, Started, TextDelta, ToolCall, Usage
from rxllm.providers import HttpCall, get_dialect
from rxllm.request import Message, Request, Tool, ToolCallRef

BASE = "http://127.0.0.1:11434"
STAMP = "2025-10-26T17:15:24.097767Z"


# --- helpers ------------------------------------------------------------------------------


def chat(
    content: str = "",
    *,
    thinking: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    done: bool = False,
    **top: Any,
) -> bytes:
    """One /api/chat NDJSON line."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking is not None:
        message["thinking"] = thinking
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    obj = {"model": "llama3", "created_at": STAMP, "message": message, "done": done, **top}
    return orjson.dumps(obj) + b"\n"


def final(reason: str = "stop", *, prompt: int | None = 26, completion: int | None = 10) -> bytes:
    """The closing done:true chat line with its counts."""
    counts: dict[str, Any] = {
        "total_duration": 4883583458,
        "load_duration": 1334875,
        "prompt_eval_duration": 342546000,
        "eval_duration": 4535599000,
    }
    if prompt is not None:
        counts["prompt_eval_count"] = prompt
    if completion is not None:
        counts["eval_count"] = completion
    return chat(done=True, done_reason=reason, **counts)


def generate(
    response: str = "", *, thinking: str | None = None, done: bool = False, **top: Any
) -> bytes:
    """One /api/generate NDJSON line."""
    obj: dict[str, Any] = {
        "model": "llama3",
        "created_at": STAMP,
        "response": response,
        "done": done,
    }
    if thinking is not None:
        obj["thinking"] = thinking
    return orjson.dumps({**obj, **top}) + b"\n"


def call(name: str, arguments: Any, **extra: Any) -> dict[str, Any]:
    """A tool call as Ollama streams it (arguments an object)."""
    return {"function": {"name": name, "arguments": arguments}, **extra}


def events(chunks: list[bytes], **kw: Any) -> tuple[list[Any], BaseException | None]:
    """Every event replay emits for ``chunks`` (it is synchronous) and its error."""
    out: list[Any] = []
    errors: list[BaseException] = []
    rxllm.replay("ollama", chunks, **kw).subscribe(out.append, errors.append)
    return out, errors[0] if errors else None


async def collect(chunks: list[bytes], **kw: Any) -> rxllm.Response:
    """The Response folded from ``chunks``."""
    return await rxllm.collect(rxllm.replay("ollama", chunks, **kw))


async def failure(chunks: list[bytes], **kw: Any) -> Any:
    """The error the replayed stream ends with."""
    with pytest.raises(RxllmError) as info:
        await collect(chunks, **kw)
    return info.value


def build(request: Request, *, api_key: str | None = None, base_url: str = BASE) -> HttpCall:
    """``build_call`` with the test defaults."""
    return get_dialect("ollama").build_call(
        request, model="llama3", base_url=base_url, api_key=api_key
    )


def body(c: HttpCall) -> dict[str, Any]:
    """The call's JSON body."""
    result: dict[str, Any] = orjson.loads(c.body)
    return result


# --- build_call ---------------------------------------------------------------------------


def test_dialect_defaults() -> None:
    """Ollama listens on 127.0.0.1:11434, needs no key and streams NDJSON."""
    d = get_dialect("ollama")
    assert d.name == "ollama"
    assert d.default_base_url == "http://127.0.0.1:11434"
    assert d.api_key_env == ()
    assert d.stream_content_type == "application/x-ndjson"
    assert d.started({}, provider="ollama", model="m") == Started(provider="ollama", model="m")


def test_build_call_posts_to_api_chat() -> None:
    """The call is a POST to {base}/api/chat asking for NDJSON, with no key by default."""
    c = build(Request.of("hi"), base_url=BASE + "/")
    assert c.method == "POST"
    assert c.url == "http://127.0.0.1:11434/api/chat"
    assert c.headers["Content-Type"] == "application/json"
    assert c.headers["Accept"] == "application/x-ndjson"
    assert "Authorization" not in c.headers


def test_build_call_sends_a_given_key_as_bearer() -> None:
    """A key (a proxy or a hosted Ollama) goes in a bearer header only."""
    key = "ollama-secret-key-123"
    c = build(Request.of("hi"), api_key=key)
    assert c.headers["Authorization"] == f"Bearer {key}"
    assert key.encode() not in c.body
    assert key not in repr(c)
    with pytest.raises(TypeError):
        pickle.dumps(c)


def test_build_call_minimal_body() -> None:
    """A plain request is model, messages and stream: true, without options."""
    assert body(build(Request.of("hi"))) == {
        "model": "llama3",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }


def test_build_call_maps_messages() -> None:
    """Roles pass through; tool calls carry object arguments; results are role tool."""
    request = Request().with_messages(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather?"},
            Message(
                role="assistant",
                tool_calls=(
                    ToolCallRef(id="call_1", name="weather", arguments={"city": "Paris"}),
                    ToolCallRef(id="", name="now"),
                ),
            ),
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "x", "name": "now", "content": "noon"},
            {"role": "assistant", "content": "18C at noon."},
        ]
    )
    assert body(build(request))["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "weather", "arguments": {"city": "Paris"}}, "id": "call_1"},
                {"function": {"name": "now", "arguments": {}}},
            ],
        },
        {"role": "tool", "content": "18C", "tool_name": "weather", "tool_call_id": "call_1"},
        {"role": "tool", "content": "noon", "tool_name": "now", "tool_call_id": "x"},
        {"role": "assistant", "content": "18C at noon."},
    ]


def test_build_call_maps_tools() -> None:
    """Tools use the function-tool shape."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    request = Request.of(
        "hi", tools=[Tool(name="weather", description="Get it", parameters=schema)]
    )
    assert body(build(request))["tools"] == [
        {
            "type": "function",
            "function": {"name": "weather", "description": "Get it", "parameters": schema},
        }
    ]


def test_build_call_tool_choice() -> None:
    """auto keeps the tools, none drops them, required or a name is a ConfigError."""
    tools = [Tool(name="weather")]
    assert "tools" in body(build(Request.of("hi", tools=tools, tool_choice="auto")))
    assert "tools" not in body(build(Request.of("hi", tools=tools, tool_choice="none")))
    for choice in ("required", "weather"):
        with pytest.raises(ConfigError, match="tool_choice"):
            build(Request.of("hi", tools=tools, tool_choice=choice))


def test_build_call_response_schema_is_format() -> None:
    """A response schema is sent as format."""
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    assert body(build(Request.of("hi", response_schema=schema)))["format"] == schema


def test_build_call_options() -> None:
    """temperature, max_tokens (num_predict) and stop go into options."""
    sent = body(build(Request.of("hi", temperature=0.1, max_tokens=30, stop=["\n\n", "END"])))
    assert sent["options"] == {"temperature": 0.1, "num_predict": 30, "stop": ["\n\n", "END"]}
    assert "max_tokens" not in sent


def test_build_call_extra_top_level_and_options_merge() -> None:
    """extra keys go to the top level; an extra options mapping merges into options."""
    request = Request.of(
        "hi",
        temperature=0.1,
        max_tokens=30,
        extra={"think": True, "keep_alive": "5m", "options": {"num_ctx": 8192, "num_predict": 5}},
    )
    sent = body(build(request))
    assert sent["think"] is True
    assert sent["keep_alive"] == "5m"
    assert sent["options"] == {"temperature": 0.1, "num_predict": 5, "num_ctx": 8192}


def test_build_call_extra_options_must_be_a_mapping() -> None:
    """extra options that is not a mapping is a ConfigError."""
    with pytest.raises(ConfigError, match="options"):
        build(Request.of("hi", extra={"options": [1, 2]}))


# --- decoding: /api/chat --------------------------------------------------------------------


async def test_chat_text_stream() -> None:
    """Chat lines fold into text; the done line gives usage (total = sum) and stop."""
    response = await collect(
        [chat("Hel"), chat("lo"), chat("!"), final("stop", prompt=26, completion=10)]
    )
    assert response.text == "Hello!"
    assert response.finish_reason == "stop"
    assert response.native_finish_reason == "stop"
    assert response.usage == Usage(input_tokens=26, output_tokens=10, total_tokens=36)


def test_chat_events() -> None:
    """Each line with content is one event; empty content emits nothing."""
    evs, error = events([chat(""), chat("a"), final()])
    assert error is None
    assert [type(e) for e in evs] == [Started, TextDelta, Usage, Finished]
    assert evs[1] == TextDelta(text="a")
    assert evs[1].raw["created_at"] == STAMP


async def test_chat_thinking() -> None:
    """message.thinking is reasoning."""
    response = await collect(
        [chat(thinking="Let me "), chat(thinking="think."), chat("42"), final()]
    )
    assert response.reasoning == "Let me think."
    assert response.text == "42"


def test_thinking_and_content_on_one_line() -> None:
    """A line with both thinking and content emits reasoning first, then text."""
    evs, _ = events([chat("b", thinking="a"), final()])
    assert evs[1:3] == [ReasoningDelta(text="a"), TextDelta(text="b")]


async def test_chat_tool_calls_arrive_whole() -> None:
    """Tool calls arrive whole with object arguments and finish as tool_calls."""
    response = await collect(
        [
            chat(
                tool_calls=[
                    call("weather", {"city": "Paris"}),
                    call("time", {"tz": "CET"}),
                ]
            ),
            final("stop"),
        ]
    )
    assert response.tool_calls == (
        ToolCall(index=0, id=None, name="weather", arguments={"city": "Paris"}),
        ToolCall(index=1, id=None, name="time", arguments={"tz": "CET"}),
    )
    assert response.finish_reason == "tool_calls"
    assert response.native_finish_reason == "stop"


async def test_tool_calls_over_several_lines_are_numbered_in_order() -> None:
    """Calls on separate lines get increasing indexes."""
    response = await collect(
        [chat(tool_calls=[call("a", {})]), chat(tool_calls=[call("b", {"x": 1})]), final()]
    )
    assert [(c.index, c.name) for c in response.tool_calls] == [(0, "a"), (1, "b")]


async def test_tool_call_ids_and_indexes_when_sent() -> None:
    """Newer servers send a call id and function.index: both are kept."""
    tc = {"id": "call_7", "function": {"index": 3, "name": "f", "arguments": {"a": 1}}}
    response = await collect([chat(tool_calls=[tc]), final()])
    assert response.tool_calls == (ToolCall(index=3, id="call_7", name="f", arguments={"a": 1}),)


@pytest.mark.parametrize(("arguments", "expected"), [("", {}), (None, {}), ('{"a": 2}', {"a": 2})])
async def test_tool_call_argument_variants(arguments: Any, expected: dict[str, Any]) -> None:
    """Missing or empty arguments are {}; a JSON string (some servers) is parsed."""
    response = await collect([chat(tool_calls=[call("f", arguments)]), final()])
    assert response.tool_calls[0].arguments == expected


@pytest.mark.parametrize("arguments", ["{oops", "[1]", 5, [1, 2]])
async def test_bad_tool_call_arguments(arguments: Any) -> None:
    """Arguments that are not a JSON object fail with MalformedFrame."""
    error = await failure([chat(tool_calls=[call("f", arguments)]), final()])
    assert isinstance(error, MalformedFrame)


async def test_oversized_tool_call_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole arguments past the bound fail with FrameTooLarge."""
    monkeypatch.setattr("rxllm.providers._ollama.MAX_ARGUMENTS_BYTES", 50)
    error = await failure([chat("ok"), chat(tool_calls=[call("f", {"a": "x" * 100})]), final()])
    assert isinstance(error, StreamInterrupted)
    assert isinstance(error.cause, FrameTooLarge)


@pytest.mark.parametrize(
    ("reason", "finish"),
    [("stop", "stop"), ("length", "length"), ("load", "stop"), ("unload", "stop")],
)
async def test_done_reasons(reason: str, finish: str) -> None:
    """done_reason maps to the finish reason; other reasons count as stop."""
    response = await collect([chat("x"), final(reason)])
    assert (response.finish_reason, response.native_finish_reason) == (finish, reason)


async def test_done_without_reason() -> None:
    """A done line without done_reason is a stop with no native reason."""
    response = await collect([chat("x"), chat(done=True)])
    assert response.finish_reason == "stop"
    assert response.native_finish_reason is None
    assert response.usage is None


async def test_usage_with_a_missing_count() -> None:
    """Without prompt_eval_count (a cached prompt) input and total are unknown."""
    response = await collect([chat("x"), final(prompt=None, completion=4)])
    assert response.usage == Usage(input_tokens=None, output_tokens=4, total_tokens=None)


async def test_content_on_the_done_line() -> None:
    """Text on the final done line is kept."""
    response = await collect([chat("Hi"), chat("!", done=True, done_reason="stop")])
    assert response.text == "Hi!"


# --- decoding: /api/generate ----------------------------------------------------------------


async def test_generate_stream() -> None:
    """/api/generate lines (response, thinking) decode the same way."""
    response = await collect(
        [
            generate(thinking="hmm"),
            generate("That"),
            generate("'s"),
            generate(
                " it",
                done=True,
                done_reason="length",
                prompt_eval_count=3,
                eval_count=3,
                context=[1, 2, 3],
            ),
        ]
    )
    assert response.reasoning == "hmm"
    assert response.text == "That's it"
    assert response.finish_reason == "length"
    assert response.usage == Usage(input_tokens=3, output_tokens=3, total_tokens=6)


# --- decoding: framing, errors -------------------------------------------------------------


async def test_last_line_without_newline() -> None:
    """A final done line without its newline still completes the stream."""
    response = await collect([chat("a"), final().rstrip(b"\n")])
    assert response.finish_reason == "stop"


async def test_blank_lines_and_crlf() -> None:
    """Blank lines are skipped and CRLF line ends are accepted."""
    response = await collect([b"\n", chat("a").replace(b"\n", b"\r\n"), b"\r\n", final()])
    assert response.text == "a"


async def test_non_streamed_json_answer() -> None:
    """stream: false answers one application/json object: decoded the same way."""
    one = orjson.dumps(
        {
            "model": "llama3",
            "message": {"role": "assistant", "content": "Whole."},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 1,
            "eval_count": 2,
        }
    )
    response = await collect([one], headers={"content-type": "application/json"})
    assert response.text == "Whole."
    assert response.usage == Usage(input_tokens=1, output_tokens=2, total_tokens=3)


async def test_no_done_line_is_incomplete() -> None:
    """A stream that ends before done: true is IncompleteStream with the partial text."""
    error = await failure([chat("Hel"), chat("lo")])
    assert isinstance(error, IncompleteStream)
    assert error.partial.text == "Hello"
    assert error.partial.finish_reason is None


async def test_inband_error_before_content() -> None:
    """An {"error": "..."} line before content is a retryable ServerError with status 200."""
    error = await failure([b'{"error":"the model failed to generate a response"}\n'])
    assert type(error) is ServerError
    assert error.status == 200
    assert error.retryable is True
    assert error.provider == "ollama"
    assert str(error) == "the model failed to generate a response"


async def test_inband_error_after_content() -> None:
    """An error line after text is StreamInterrupted with the exact partial and cause."""
    error = await failure(
        [
            generate(" Yes"),
            generate("."),
            generate("I") + b'{"error":"an error was encountered while running the model"}\n',
        ]
    )
    assert type(error) is StreamInterrupted
    assert error.partial.text == " Yes.I"
    assert isinstance(error.cause, ServerError)
    assert error.__cause__ is error.cause
    assert str(error.cause) == "an error was encountered while running the model"


async def test_inband_error_variants() -> None:
    """A nested error object and a busy server are understood."""
    nested = await failure([b'{"error": {"message": "boom"}}\n'])
    assert type(nested) is ServerError
    assert str(nested) == "boom"
    busy = await failure([b'{"error": "server busy, please try again"}\n'])
    assert type(busy) is Overloaded


async def test_malformed_line_before_content() -> None:
    """A line that is not JSON is MalformedFrame."""
    error = await failure([b"{not json\n"])
    assert isinstance(error, MalformedFrame)


async def test_malformed_line_after_content_keeps_the_partial() -> None:
    """A malformed line after text keeps the text read before it, even in the same read."""
    error = await failure([chat("ok") + b"{not json\n" + chat("lost")])
    assert isinstance(error, StreamInterrupted)
    assert error.partial.text == "ok"
    assert isinstance(error.cause, MalformedFrame)


@pytest.mark.parametrize(
    "line",
    [
        b"[1, 2]\n",
        b'"text"\n',
        b'{"message": "hi", "done": false}\n',
        b'{"message": {"content": 5}, "done": false}\n',
        b'{"message": {"content": "", "tool_calls": [5]}, "done": false}\n',
        b'{"message": {"content": "", "tool_calls": [{"name": "f"}]}, "done": false}\n',
        b'{"response": ["a"], "done": false}\n',
    ],
)
async def test_lines_of_the_wrong_shape(line: bytes) -> None:
    """Valid JSON that is not an Ollama object is MalformedFrame, never a raw TypeError."""
    error = await failure([line, final()])
    assert isinstance(error, MalformedFrame)


async def test_invalid_utf8_is_a_malformed_frame() -> None:
    """A line with invalid UTF-8 (never sent by Ollama, which is Go) is MalformedFrame."""
    error = await failure([b'{"response": "a\xffb", "done": false}\n', final()])
    assert isinstance(error, MalformedFrame)


async def test_oversized_line() -> None:
    """A line over max_event_bytes is FrameTooLarge; earlier lines of the read survive."""
    error = await failure([chat("ok") + chat("x" * 3000) + final()], max_event_bytes=1000)
    assert isinstance(error, StreamInterrupted)
    assert error.partial.text == "ok"
    assert isinstance(error.cause, FrameTooLarge)


# --- HTTP errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message", "cls", "retryable"),
    [
        (400, "invalid format", BadRequest, False),
        (401, "unauthorized", AuthenticationError, False),
        (404, "model 'llama9' not found, try pulling it first", BadRequest, False),
        (429, "too many requests", RateLimited, True),
        (500, "the model failed to generate a response", ServerError, True),
        (502, "cloud model unreachable", ServerError, True),
    ],
)
async def test_http_errors(
    status: int, message: str, cls: type[ProviderError], retryable: bool
) -> None:
    """{"error": "..."} bodies map by status to the typed errors."""
    error = await failure([orjson.dumps({"error": message})], status=status)
    assert type(error) is cls
    assert error.status == status
    assert error.retryable is retryable
    assert error.provider == "ollama"
    assert str(error) == message


async def test_http_error_retry_after_and_plain_text() -> None:
    """retry-after is honoured and a plain-text body becomes the message."""
    error = await failure([b"404 page not found"], status=429, headers={"Retry-After": "3"})
    assert isinstance(error, RateLimited)
    assert error.retry_after == 3.0
    assert str(error) == "404 page not found"


async def test_http_error_nested_object_and_empty_body() -> None:
    """A nested error object is read; an empty body names the status."""
    nested = await failure([b'{"error": {"message": "bad"}}'], status=400)
    assert str(nested) == "bad"
    empty = await failure([], status=500)
    assert type(empty) is ServerError
    assert "500" in str(empty)


# --- chunk boundaries -----------------------------------------------------------------------

STREAM = b"".join(
    [
        chat(thinking="Thïnk 😀"),
        chat("Grüße, "),
        chat("wörld 😀"),
        chat(tool_calls=[call("weather", {"city": "Zürich"}), call("time", {"tz": "CET"})]),
        final("stop", prompt=9, completion=10),
    ]
)


def _expected(response: rxllm.Response) -> None:
    assert response.reasoning == "Thïnk 😀"
    assert response.text == "Grüße, wörld 😀"
    assert [(c.index, c.name, c.arguments) for c in response.tool_calls] == [
        (0, "weather", {"city": "Zürich"}),
        (1, "time", {"tz": "CET"}),
    ]
    assert response.finish_reason == "tool_calls"
    assert response.usage == Usage(input_tokens=9, output_tokens=10, total_tokens=19)


async def test_every_chunk_boundary() -> None:
    """Splitting the stream in two at every byte offset decodes to the same Response."""
    whole = await collect([STREAM])
    _expected(whole)
    for cut in range(len(STREAM) + 1):
        assert await collect([STREAM[:cut], STREAM[cut:]]) == whole, cut


async def test_byte_by_byte() -> None:
    """One byte per read decodes the same."""
    _expected(await collect([STREAM[i : i + 1] for i in range(len(STREAM))]))


@settings(max_examples=150, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=25))
def test_any_rechunking(cuts: list[int]) -> None:
    """Any split of the stream into reads yields the same events."""
    points = sorted(set(cuts))
    pieces = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    whole, error = events([STREAM])
    split, split_error = events(pieces)
    assert error is None
    assert split_error is None
    assert split == whole
