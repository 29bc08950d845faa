"""The OpenAI Chat Completions dialect (wire-formats.md 2.1 and 5): calls, decoding, errors."""

from __future__ import annotations

import pickle
import time
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rxllm
from rxllm.errors import (
    AuthenticationError,
    BadRequest,
    FrameTooLarge,
    IncompleteStream,
    MalformedFrame,
    Overloaded,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    RequestTimeout,
    RxllmError,
    ServerError,
    StreamInterrupted,
    WireError,
)
from rxllm.events import (
    Finished,
    ReasoningDelta,
    Started,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from rxllm.providers import HttpCall, ResponseReader, get_dialect, parse_retry_after
from rxllm.request import Message, Request, Tool, ToolCallRef

KEY = "sk-test-abcdefghijklmnopqrstuvwxyz0123"
BASE = "https://api.example.com/v1"


# --- helpers ------------------------------------------------------------------------------


def sse(obj: Any, *, event: str | None = None, eol: bytes = b"\n") -> bytes:
    """One SSE event whose data is ``obj`` as compact JSON (or raw bytes/str)."""
    if isinstance(obj, bytes):
        data = obj
    elif isinstance(obj, str):
        data = obj.encode()
    else:
        data = orjson.dumps(obj)
    head = b"event: " + event.encode() + eol if event else b""
    return head + b"data: " + data + eol + eol


DONE = b"data: [DONE]\n\n"


def chunk(
    delta: dict[str, Any] | None = None,
    *,
    finish: str | None = None,
    index: int = 0,
    **top: Any,
) -> dict[str, Any]:
    """A ``chat.completion.chunk`` with one choice."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-test",
        "choices": [
            {"index": index, "delta": delta or {}, "logprobs": None, "finish_reason": finish}
        ],
        **top,
    }


def text(t: str) -> bytes:
    """A chunk event carrying text ``t``."""
    return sse(chunk({"content": t}))


ROLE = sse(chunk({"role": "assistant", "content": ""}))
STOP = sse(chunk({}, finish="stop"))


def usage_chunk(prompt: int = 5, completion: int = 7, **details: Any) -> bytes:
    """The empty-choices usage chunk OpenAI sends after the finish chunk."""
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        **details,
    }
    return sse(
        {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": usage}
    )


def tool_delta(
    index: int, arguments: str, *, id: str | None = None, name: str | None = None
) -> dict[str, Any]:
    """One ``delta.tool_calls[]`` entry."""
    entry: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if id is not None:
        entry["id"] = id
        entry["type"] = "function"
    if name is not None:
        entry["function"]["name"] = name
    return entry


def events(chunks: list[bytes], **kw: Any) -> tuple[list[Any], BaseException | None]:
    """Every event ``rxllm.replay`` emits for ``chunks`` (it is synchronous) and its error."""
    out: list[Any] = []
    errors: list[BaseException] = []
    rxllm.replay("openai", chunks, **kw).subscribe(out.append, errors.append)
    return out, errors[0] if errors else None


async def collect(chunks: list[bytes], **kw: Any) -> rxllm.Response:
    """The Response folded from ``chunks``."""
    return await rxllm.collect(rxllm.replay("openai", chunks, **kw))


async def failure(chunks: list[bytes], **kw: Any) -> Any:
    """The error the replayed stream ends with."""
    with pytest.raises(RxllmError) as info:
        await collect(chunks, **kw)
    return info.value


def build(request: Request, *, api_key: str | None = KEY, base_url: str = BASE) -> HttpCall:
    """``build_call`` with the test defaults."""
    return get_dialect("openai").build_call(
        request, model="gpt-test", base_url=base_url, api_key=api_key
    )


def body(call: HttpCall) -> dict[str, Any]:
    """The call's JSON body."""
    result: dict[str, Any] = orjson.loads(call.body)
    return result


# --- build_call ---------------------------------------------------------------------------


def test_dialect_defaults() -> None:
    """The dialect targets api.openai.com/v1 with OPENAI_API_KEY and reads x-request-id."""
    d = get_dialect("openai")
    assert d.name == "openai"
    assert d.default_base_url == "https://api.openai.com/v1"
    assert d.api_key_env == ("OPENAI_API_KEY",)
    assert d.stream_content_type == "text/event-stream"


def test_build_call_posts_to_chat_completions() -> None:
    """The call is a POST to {base}/chat/completions, a trailing slash on the base ignored."""
    call = build(Request.of("hi"), base_url=BASE + "/")
    assert call.method == "POST"
    assert call.url == "https://api.example.com/v1/chat/completions"
    assert call.headers["Content-Type"] == "application/json"
    assert call.headers["Accept"] == "text/event-stream"


def test_build_call_key_is_a_bearer_header_only() -> None:
    """The API key is sent as a bearer header and appears nowhere else, not even in repr."""
    call = build(Request.of("hi"))
    assert call.headers["Authorization"] == f"Bearer {KEY}"
    assert KEY.encode() not in call.body
    assert KEY not in repr(call)
    assert KEY not in str(call)


def test_build_call_without_key_sends_no_authorization() -> None:
    """Without a key (a local server) no Authorization header is sent."""
    call = build(Request.of("hi"), api_key=None)
    assert "Authorization" not in call.headers


def test_http_call_refuses_to_pickle() -> None:
    """An HttpCall carries a key, so pickling it raises TypeError without showing the key."""
    call = build(Request.of("hi"))
    with pytest.raises(TypeError) as info:
        pickle.dumps(call)
    assert KEY not in str(info.value)


def test_build_call_minimal_body() -> None:
    """A plain request streams with usage included and sends no optional fields."""
    assert body(build(Request.of("hi"))) == {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_build_call_maps_every_message_kind() -> None:
    """System, user, assistant tool calls and tool results keep the Chat Completions shape."""
    request = Request().with_messages(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris and Rome?", "name": "ann"},
            Message(
                role="assistant",
                tool_calls=(
                    ToolCallRef(id="call_1", name="weather", arguments={"city": "Paris"}),
                    ToolCallRef(id="call_2", name="weather", arguments={"city": "Rome"}),
                ),
            ),
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": None},
            {"role": "assistant", "content": "Paris 18C."},
        ]
    )
    assert body(build(request))["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris and Rome?", "name": "ann"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "content": "18C", "tool_call_id": "call_1"},
        {"role": "tool", "content": "", "tool_call_id": "call_2"},
        {"role": "assistant", "content": "Paris 18C."},
    ]


def test_build_call_maps_tools() -> None:
    """Tools are sent as function tools with their JSON Schema parameters."""
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


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        ("weather", {"type": "function", "function": {"name": "weather"}}),
    ],
)
def test_build_call_maps_tool_choice(choice: str, expected: Any) -> None:
    """auto/none/required pass through and any other value forces that function."""
    request = Request.of("hi", tools=[Tool(name="weather")], tool_choice=choice)
    assert body(build(request))["tool_choice"] == expected


def test_build_call_maps_response_schema_to_json_schema_format() -> None:
    """A response schema becomes response_format json_schema with its name."""
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    request = Request.of("hi", response_schema=schema, response_schema_name="count")
    assert body(build(request))["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "count", "schema": schema},
    }


def test_build_call_maps_sampling_controls() -> None:
    """temperature, max_tokens and stop are sent as is (stop as a list)."""
    request = Request.of("hi", temperature=0.2, max_tokens=50, stop="END")
    sent = body(build(request))
    assert sent["temperature"] == 0.2
    assert sent["max_tokens"] == 50
    assert sent["stop"] == ["END"]


def test_build_call_merges_extra_last() -> None:
    """extra adds provider fields and overrides generated ones."""
    request = Request.of(
        "hi",
        max_tokens=50,
        extra={"max_tokens": 10, "reasoning_effort": "low", "stream_options": None},
    )
    sent = body(build(request))
    assert sent["max_tokens"] == 10
    assert sent["reasoning_effort"] == "low"
    assert sent["stream_options"] is None


def test_started_reads_the_request_id_header() -> None:
    """Started carries x-request-id, whatever the header's case."""
    started = get_dialect("openai").started(
        {"X-Request-ID": "req_123"}, provider="openai", model="m"
    )
    assert started == Started(provider="openai", model="m", request_id="req_123")


# --- decoding: content ----------------------------------------------------------------------


async def test_text_stream() -> None:
    """Text chunks fold into the text; the finish chunk and usage chunk end the stream."""
    response = await collect(
        [ROLE, text("Hel"), text("lo"), STOP, usage_chunk(5, 7), DONE],
        headers={"x-request-id": "req_9"},
        model="gpt-test",
    )
    assert response.text == "Hello"
    assert response.finish_reason == "stop"
    assert response.native_finish_reason == "stop"
    assert response.usage == Usage(input_tokens=5, output_tokens=7, total_tokens=12)
    assert (response.provider, response.model, response.request_id) == (
        "openai",
        "gpt-test",
        "req_9",
    )


def test_role_only_first_chunk_is_not_content() -> None:
    """The role-only first chunk (content "" or null) emits nothing after Started."""
    for first in (ROLE, sse(chunk({"role": "assistant", "content": None}))):
        evs, error = events([first])
        assert [type(e) for e in evs] == [Started]
        assert isinstance(error, IncompleteStream)


def test_role_and_text_in_the_first_chunk() -> None:
    """A first chunk with both role and text emits the text."""
    evs, error = events([sse(chunk({"role": "assistant", "content": "Hi"})), STOP, DONE])
    assert error is None
    assert [e for e in evs if isinstance(e, TextDelta)] == [TextDelta(text="Hi")]


def test_events_in_order_with_raw_payload() -> None:
    """Each event keeps the provider chunk in raw, excluded from equality."""
    evs, _ = events([ROLE, text("a"), STOP, DONE])
    assert evs[1:] == [TextDelta(text="a"), Finished(reason="stop", native_reason="stop")]
    assert evs[1].raw["id"] == "chatcmpl-1"


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_reasoning_fields(field: str) -> None:
    """reasoning_content (llama.cpp/vLLM/DeepSeek) and reasoning (Ollama /v1) are reasoning."""
    response = await collect(
        [
            ROLE,
            sse(chunk({field: "Let me "})),
            sse(chunk({field: "think."})),
            text("42"),
            STOP,
            DONE,
        ]
    )
    assert response.reasoning == "Let me think."
    assert response.text == "42"


def test_reasoning_and_content_in_one_delta() -> None:
    """A delta holding reasoning and content emits both, text first as the delta lists it."""
    evs, _ = events([sse(chunk({"content": "b", "reasoning_content": "a"})), STOP, DONE])
    assert evs[1:3] == [TextDelta(text="b"), ReasoningDelta(text="a")]


async def test_refusal_is_text() -> None:
    """A refusal delta is surfaced as text."""
    response = await collect([sse(chunk({"refusal": "I can't."})), STOP, DONE])
    assert response.text == "I can't."


async def test_parallel_tool_calls_by_index() -> None:
    """Two calls stream one after the other, keyed by index, and finish as tool_calls."""
    response = await collect(
        [
            ROLE,
            sse(chunk({"tool_calls": [tool_delta(0, "", id="call_a", name="weather")]})),
            sse(chunk({"tool_calls": [tool_delta(0, '{"city": ')]})),
            sse(chunk({"tool_calls": [tool_delta(0, '"Paris"}')]})),
            sse(chunk({"tool_calls": [tool_delta(1, "", id="call_b", name="time")]})),
            sse(chunk({"tool_calls": [tool_delta(1, '{"tz": "CET"}')]})),
            sse(chunk({}, finish="tool_calls")),
            usage_chunk(),
            DONE,
        ]
    )
    assert response.tool_calls == (
        ToolCall(index=0, id="call_a", name="weather", arguments={"city": "Paris"}),
        ToolCall(index=1, id="call_b", name="time", arguments={"tz": "CET"}),
    )
    assert response.pending_tool_calls == ()
    assert response.finish_reason == "tool_calls"


async def test_interleaved_tool_call_fragments_are_assembled_by_index() -> None:
    """Fragments of two calls interleaved, even in one delta, never mix."""
    response = await collect(
        [
            sse(
                chunk(
                    {
                        "tool_calls": [
                            tool_delta(1, '{"b"', id="call_b", name="g"),
                            tool_delta(0, '{"a"', id="call_a", name="f"),
                        ]
                    }
                )
            ),
            sse(chunk({"tool_calls": [tool_delta(0, ": 1}")]})),
            sse(chunk({"tool_calls": [tool_delta(1, ": 2}")]})),
            sse(chunk({}, finish="tool_calls")),
            DONE,
        ]
    )
    assert [(c.index, c.id, c.name, c.arguments) for c in response.tool_calls] == [
        (0, "call_a", "f", {"a": 1}),
        (1, "call_b", "g", {"b": 2}),
    ]


def test_tool_call_deltas_carry_id_and_name_first() -> None:
    """Each fragment is a ToolCallDelta; id and name come with the first one only."""
    evs, _ = events(
        [
            sse(chunk({"tool_calls": [tool_delta(0, "", id="call_a", name="f")]})),
            sse(chunk({"tool_calls": [tool_delta(0, "{}")]})),
            sse(chunk({}, finish="tool_calls")),
            DONE,
        ]
    )
    assert evs[1:] == [
        ToolCallDelta(index=0, id="call_a", name="f", arguments=""),
        ToolCallDelta(index=0, arguments="{}"),
        ToolCall(index=0, id="call_a", name="f", arguments={}),
        Finished(reason="tool_calls", native_reason="tool_calls"),
    ]


async def test_whole_arguments_in_single_deltas_as_ollama_v1_sends() -> None:
    """Ollama /v1 sends each call whole: id, name and complete arguments in one delta."""
    response = await collect(
        [
            sse(chunk({"role": "assistant", "content": ""})),
            sse(
                chunk(
                    {
                        "tool_calls": [
                            tool_delta(0, '{"city":"Paris"}', id="call_x", name="weather"),
                        ]
                    }
                )
            ),
            sse(chunk({"tool_calls": [tool_delta(1, '{"tz":"CET"}', id="call_y", name="time")]})),
            sse(chunk({}, finish="tool_calls")),
            DONE,
        ]
    )
    assert [(c.id, c.arguments) for c in response.tool_calls] == [
        ("call_x", {"city": "Paris"}),
        ("call_y", {"tz": "CET"}),
    ]


async def test_tool_call_without_arguments_is_an_empty_object() -> None:
    """A call whose only fragment is "" has arguments {}."""
    response = await collect(
        [
            sse(chunk({"tool_calls": [tool_delta(0, "", id="c", name="now")]})),
            sse(chunk({}, finish="tool_calls")),
            DONE,
        ]
    )
    assert response.tool_calls == (ToolCall(index=0, id="c", name="now", arguments={}),)


async def test_done_without_finish_chunk_still_completes_tool_calls() -> None:
    """A server that sends [DONE] with no finish chunk still yields its complete calls."""
    response = await collect(
        [sse(chunk({"tool_calls": [tool_delta(0, '{"a":1}', id="c", name="f")]})), DONE]
    )
    assert response.tool_calls == (ToolCall(index=0, id="c", name="f", arguments={"a": 1}),)
    assert response.finish_reason is None


async def test_deprecated_function_call_delta() -> None:
    """The deprecated single function_call delta is a tool call at index 0."""
    response = await collect(
        [
            sse(chunk({"function_call": {"name": "f", "arguments": ""}})),
            sse(chunk({"function_call": {"arguments": '{"x":1}'}})),
            sse(chunk({}, finish="function_call")),
            DONE,
        ]
    )
    assert response.tool_calls == (ToolCall(index=0, id=None, name="f", arguments={"x": 1}),)
    assert response.finish_reason == "tool_calls"
    assert response.native_finish_reason == "function_call"


@pytest.mark.parametrize(
    ("native", "reason"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("content_filter", "content_filter"),
        ("tool_calls", "tool_calls"),
        ("something_new", "stop"),
    ],
)
async def test_finish_reasons(native: str, reason: str) -> None:
    """Native finish reasons map to the normalized ones; unknown ones count as stop."""
    response = await collect([text("x"), sse(chunk({}, finish=native)), DONE])
    assert (response.finish_reason, response.native_finish_reason) == (reason, native)


async def test_empty_choices_usage_chunk_after_finish() -> None:
    """The usage chunk with empty choices after the finish chunk gives usage and details."""
    response = await collect(
        [
            text("x"),
            STOP,
            usage_chunk(
                11,
                22,
                completion_tokens_details={"reasoning_tokens": 8},
                prompt_tokens_details={"cached_tokens": 4},
            ),
            DONE,
        ]
    )
    assert response.usage == Usage(
        input_tokens=11, output_tokens=22, total_tokens=33, reasoning_tokens=8, cached_tokens=4
    )
    assert response.finish_reason == "stop"


async def test_llama_cpp_usage_on_the_finish_chunk() -> None:
    """llama.cpp puts usage (and timings) on the finish chunk itself."""
    finish = chunk(
        {},
        finish="stop",
        usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        timings={"predicted_per_second": 50.0},
    )
    response = await collect([text("ok"), sse(finish), DONE])
    assert response.usage == Usage(input_tokens=3, output_tokens=4, total_tokens=7)
    assert response.finish_reason == "stop"


async def test_usage_null_on_every_chunk() -> None:
    """ "usage": null on every chunk is ignored until the real usage chunk."""
    response = await collect(
        [
            sse(chunk({"role": "assistant", "content": ""}, usage=None)),
            sse(chunk({"content": "a"}, usage=None)),
            sse(chunk({"content": "b"}, usage=None)),
            sse(chunk({}, finish="stop", usage=None)),
            usage_chunk(1, 2),
            DONE,
        ]
    )
    assert response.text == "ab"
    assert response.usage == Usage(input_tokens=1, output_tokens=2, total_tokens=3)


async def test_only_choice_zero_is_decoded() -> None:
    """With n > 1 the chunks of other choices are ignored, their finish included."""
    response = await collect(
        [
            text("A"),
            sse(chunk({"content": "B"}, index=1)),
            sse(chunk({}, finish="length", index=1)),
            text("a"),
            STOP,
            DONE,
        ]
    )
    assert response.text == "Aa"
    assert response.finish_reason == "stop"


async def test_choice_zero_found_behind_another_choice() -> None:
    """A chunk listing choice 1 before choice 0 still yields choice 0's text."""
    two = chunk({"content": "B"}, index=1)
    two["choices"].append({"index": 0, "delta": {"content": "a"}, "finish_reason": None})
    response = await collect([sse(two), STOP, DONE])
    assert response.text == "a"


# --- decoding: framing ----------------------------------------------------------------------


async def test_keep_alive_comments_are_ignored() -> None:
    """SSE comment lines (keep-alives) between events change nothing."""
    response = await collect([b": keep-alive\n\n", text("a"), b": ping\n", text("b"), STOP, DONE])
    assert response.text == "ab"


async def test_data_without_space() -> None:
    """data: without the optional space is the same event."""
    response = await collect(
        [b"data:" + orjson.dumps(chunk({"content": "x"})) + b"\n\n", b"data:[DONE]\n\n"]
    )
    assert response.text == "x"


async def test_crlf_line_endings() -> None:
    """CRLF-terminated events, split anywhere, decode like LF ones."""
    raw = (
        b"".join(
            [sse(chunk({"content": "é"}), eol=b"\r\n"), sse(chunk({}, finish="stop"), eol=b"\r\n")]
        )
        + b"data: [DONE]\r\n\r\n"
    )
    whole = await collect([raw])
    split = await collect([raw[:30], raw[30:31], raw[31:]])
    assert whole.text == split.text == "é"
    assert whole.finish_reason == "stop"


async def test_invalid_utf8_in_a_payload_is_replaced() -> None:
    """Invalid UTF-8 inside a payload becomes U+FFFD instead of failing the stream."""
    bad = b'data: {"choices":[{"index":0,"delta":{"content":"a\xffb"},"finish_reason":null}]}\n\n'
    response = await collect([bad, STOP, DONE])
    assert response.text == "a\ufffdb"


async def test_unknown_named_event_is_decoded_as_data() -> None:
    """An event with an unexpected event: name is still decoded as a chunk."""
    response = await collect([sse(chunk({"content": "x"}), event="delta"), STOP, DONE])
    assert response.text == "x"


async def test_no_done_is_incomplete() -> None:
    """A stream that closes without [DONE] is IncompleteStream carrying the partial text."""
    error = await failure([ROLE, text("Hel"), text("lo"), STOP])
    assert isinstance(error, IncompleteStream)
    assert isinstance(error, StreamInterrupted)
    assert error.partial.text == "Hello"
    assert error.partial.finish_reason == "stop"


async def test_no_done_mid_tool_call_keeps_the_pending_call() -> None:
    """A stream cut inside tool arguments reports the call as pending."""
    error = await failure(
        [sse(chunk({"tool_calls": [tool_delta(0, '{"ci', id="c", name="weather")]}))]
    )
    assert isinstance(error, IncompleteStream)
    (pending,) = error.partial.pending_tool_calls
    assert (pending.index, pending.id, pending.name, pending.arguments) == (
        0,
        "c",
        "weather",
        '{"ci',
    )


async def test_empty_body_is_incomplete() -> None:
    """A 200 response with an empty body is IncompleteStream."""
    assert isinstance(await failure([]), IncompleteStream)


# --- decoding: errors in the stream ---------------------------------------------------------

SERVER_ERROR = {
    "error": {
        "message": "The server had an error while processing your request. Sorry about that!",
        "type": "server_error",
        "param": None,
        "code": None,
    }
}


async def test_inband_error_before_content_is_the_typed_error() -> None:
    """{"error": ...} then [DONE] before any content raises the provider error itself."""
    error = await failure([ROLE, sse(SERVER_ERROR), DONE])
    assert type(error) is ServerError
    assert error.status == 200
    assert error.code == "server_error"
    assert error.retryable is True
    assert error.provider == "openai"
    assert "Sorry about that" in str(error)


async def test_inband_error_after_content_is_stream_interrupted() -> None:
    """An in-band error after text is StreamInterrupted with the exact partial and cause."""
    error = await failure([ROLE, text("Hel"), text("lo"), sse(SERVER_ERROR), DONE])
    assert type(error) is StreamInterrupted
    assert error.partial.text == "Hello"
    assert error.partial.finish_reason is None
    assert isinstance(error.cause, ServerError)
    assert error.__cause__ is error.cause


async def test_inband_error_in_the_same_read_keeps_earlier_text() -> None:
    """Text and an error that arrive in one read: the text still reaches the consumer."""
    error = await failure([ROLE + text("abc") + sse(SERVER_ERROR) + DONE])
    assert isinstance(error, StreamInterrupted)
    assert error.partial.text == "abc"


@pytest.mark.parametrize(
    ("err", "cls"),
    [
        ({"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}, RateLimited),
        ({"message": "quota", "type": "insufficient_quota", "code": None}, QuotaExhausted),
        ({"message": "bad", "type": "invalid_request_error", "code": None}, BadRequest),
        ({"message": "busy", "type": "overloaded_error"}, Overloaded),
        ({"message": "?"}, ServerError),
    ],
)
async def test_inband_error_types(err: dict[str, Any], cls: type[ProviderError]) -> None:
    """The in-band error's type or code picks the error class."""
    error = await failure([sse({"error": err}), DONE])
    assert type(error) is cls


@pytest.mark.parametrize(
    ("code", "cls"),
    [(504, ServerError), (429, RateLimited), (400, BadRequest), (503, ServerError)],
)
async def test_vllm_integer_code(code: int, cls: type[ProviderError]) -> None:
    """vLLM's integer code is an HTTP status and picks the class; its type is the code."""
    err = {"error": {"message": "TimeoutError", "type": "GatewayTimeout", "code": code}}
    error = await failure([sse(err), DONE])
    assert type(error) is cls
    assert error.code == "GatewayTimeout"
    assert str(error) == "TimeoutError"


async def test_vllm_error_after_content() -> None:
    """vLLM's error after the stream started interrupts it with the text so far."""
    err = {"error": {"message": "TimeoutError", "type": "GatewayTimeout", "code": 504}}
    error = await failure([text("par"), text("tial"), sse(err), DONE])
    assert isinstance(error, StreamInterrupted)
    assert error.partial.text == "partial"
    assert isinstance(error.cause, ServerError)


async def test_event_error() -> None:
    """An event: error frame (Assistants-style) is a typed in-band error."""
    frame = sse({"error": {"message": "limit", "code": "rate_limit_exceeded"}}, event="error")
    error = await failure([frame])
    assert type(error) is RateLimited
    assert str(error) == "limit"


async def test_event_error_with_plain_text_data() -> None:
    """An event: error whose data is not JSON is a server error carrying that text."""
    error = await failure([b"event: error\ndata: upstream exploded\n\n"])
    assert type(error) is ServerError
    assert str(error) == "upstream exploded"


async def test_malformed_json_before_content() -> None:
    """A frame that is not JSON is MalformedFrame, a WireError and ValueError."""
    error = await failure([ROLE, b"data: {not json\n\n", DONE])
    assert isinstance(error, MalformedFrame)
    assert isinstance(error, WireError)
    assert isinstance(error, ValueError)
    assert "{not json" in error.frame


async def test_malformed_json_after_content_keeps_the_partial() -> None:
    """A malformed frame after text interrupts the stream with the text before it."""
    error = await failure([text("ok") + b"data: {not json\n\n" + text("lost"), DONE])
    assert isinstance(error, StreamInterrupted)
    assert error.partial.text == "ok"
    assert isinstance(error.cause, MalformedFrame)


@pytest.mark.parametrize(
    "data",
    [
        b"[1, 2]",
        b"null",
        b'"text"',
        b'{"choices": [null]}',
        b'{"choices": [{"index": 0, "delta": "x"}]}',
        b'{"choices": [{"index": 0, "delta": {"content": 5}, "finish_reason": null}]}',
        b'{"choices": [{"index": 0, "delta": {"content": ["a"]}, "finish_reason": null}]}',
        b'{"choices": [{"index": 0, "delta": {"tool_calls": [7]}}]}',
        b'{"choices": [], "usage": 3}',
    ],
)
async def test_json_of_the_wrong_shape_is_malformed(data: bytes) -> None:
    """Valid JSON that is not a chunk is a clear MalformedFrame, never a raw TypeError."""
    error = await failure([sse(data), DONE])
    assert isinstance(error, MalformedFrame)


async def test_tool_arguments_that_are_not_json() -> None:
    """Assembled tool arguments that do not parse fail the stream with MalformedFrame."""
    error = await failure(
        [
            sse(chunk({"tool_calls": [tool_delta(0, "{oops", id="c", name="f")]})),
            sse(chunk({}, finish="tool_calls")),
            DONE,
        ]
    )
    assert isinstance(error, StreamInterrupted)
    assert isinstance(error.cause, MalformedFrame)
    assert error.partial.pending_tool_calls[0].arguments == "{oops"


async def test_oversized_frame_keeps_the_good_events_before_it() -> None:
    """An event over max_event_bytes is FrameTooLarge; earlier events in the read survive."""
    big = text("x" * 5000)
    error = await failure([text("ok") + big + STOP + DONE], max_event_bytes=1000)
    assert isinstance(error, StreamInterrupted)
    assert error.partial.text == "ok"
    assert isinstance(error.cause, FrameTooLarge)
    assert error.cause.limit == 1000


async def test_oversized_tool_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tool arguments past the bound fail with FrameTooLarge instead of growing."""
    monkeypatch.setattr("rxllm.providers._openai.MAX_ARGUMENTS_BYTES", 100)
    frags = [
        sse(chunk({"tool_calls": [tool_delta(0, '{"a":"' + "y" * 60, id="c", name="f")]})),
        sse(chunk({"tool_calls": [tool_delta(0, "y" * 60)]})),
    ]
    error = await failure([*frags, DONE])
    assert isinstance(error, StreamInterrupted)
    assert isinstance(error.cause, FrameTooLarge)


def test_reader_scrubs_the_key_from_inband_errors() -> None:
    """A provider echoing the literal API key in an in-band error never shows it."""
    secret = "plain-secret-token-value"
    dialect = get_dialect("openai")
    reader = ResponseReader(
        dialect.stream_decoder(content_type="text/event-stream"),
        provider="openai",
        secrets=(secret,),
    )
    reader.feed(sse({"error": {"message": f"bad key {secret}", "type": "invalid_request_error"}}))
    assert reader.error is not None
    assert secret not in str(reader.error)
    assert secret not in repr(reader.error)


# --- non-streamed JSON body -----------------------------------------------------------------


async def test_non_streamed_json_completion() -> None:
    """A server that answers application/json with one completion still yields a Response."""
    completion = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello",
                    "reasoning_content": "hmm",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"a": 1}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    raw = orjson.dumps(completion)
    response = await collect(
        [raw[:10], raw[10:]], headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert response.text == "Hello"
    assert response.reasoning == "hmm"
    assert response.tool_calls == (ToolCall(index=0, id="call_1", name="f", arguments={"a": 1}),)
    assert response.finish_reason == "tool_calls"
    assert response.usage == Usage(input_tokens=1, output_tokens=2, total_tokens=3)


@pytest.mark.parametrize(
    ("raw", "cls"),
    [
        (b'{"error": {"message": "boom", "type": "server_error"}}', ServerError),
        (b"<html>oops</html>", MalformedFrame),
        (b"[1]", MalformedFrame),
        (b'{"choices": "x"}', MalformedFrame),
        (
            b'{"choices": [{"message": {"tool_calls": [{"function": {"arguments": "{"}}]}}]}',
            MalformedFrame,
        ),
    ],
)
async def test_non_streamed_json_errors(raw: bytes, cls: type[Exception]) -> None:
    """A JSON body that is an error, not JSON, or the wrong shape gets a typed error."""
    error = await failure([raw], headers={"content-type": "application/json"})
    assert type(error) is cls


async def test_non_streamed_json_body_is_bounded() -> None:
    """A JSON body over max_event_bytes fails with FrameTooLarge."""
    error = await failure(
        [b'{"choices": [', b" " * 600, b"]}"],
        headers={"content-type": "application/json"},
        max_event_bytes=500,
    )
    assert isinstance(error, FrameTooLarge)


# --- HTTP error responses -------------------------------------------------------------------


def error_body(message: str, type_: str, code: str | None = None) -> bytes:
    """An OpenAI error body."""
    return orjson.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})


@pytest.mark.parametrize(
    ("status", "type_", "cls", "retryable"),
    [
        (400, "invalid_request_error", BadRequest, False),
        (401, "invalid_request_error", AuthenticationError, False),
        (403, "permission_denied", AuthenticationError, False),
        (404, "invalid_request_error", BadRequest, False),
        (408, "timeout", RequestTimeout, True),
        (409, "conflict", ServerError, True),
        (422, "invalid_request_error", BadRequest, False),
        (429, "requests", RateLimited, True),
        (500, "server_error", ServerError, True),
        (502, "server_error", ServerError, True),
        (503, "server_error", ServerError, True),
    ],
)
async def test_http_error_statuses(
    status: int, type_: str, cls: type[ProviderError], retryable: bool
) -> None:
    """Each HTTP status maps to its error class and retry policy (openai-python's rules)."""
    error = await failure(
        [error_body("went wrong", type_)], status=status, headers={"x-request-id": "req_e"}
    )
    assert type(error) is cls
    assert error.status == status
    assert error.retryable is retryable
    assert error.code == type_
    assert error.provider == "openai"
    assert error.request_id == "req_e"
    assert str(error) == "went wrong"


async def test_http_error_code_wins_over_type() -> None:
    """The error's code, when present, is the error's code."""
    error = await failure(
        [error_body("Rate limit reached", "requests", "rate_limit_exceeded")], status=429
    )
    assert error.code == "rate_limit_exceeded"


async def test_rate_limit_retry_after_ms() -> None:
    """retry-after-ms (milliseconds) is preferred to retry-after."""
    error = await failure(
        [error_body("Rate limit reached", "requests", "rate_limit_exceeded")],
        status=429,
        headers={"retry-after-ms": "1500", "retry-after": "9"},
    )
    assert isinstance(error, RateLimited)
    assert error.retryable is True
    assert error.retry_after == 1.5


@pytest.mark.parametrize(("header", "seconds"), [("2", 2.0), ("0.25", 0.25), (" 7 ", 7.0)])
async def test_rate_limit_retry_after_seconds(header: str, seconds: float) -> None:
    """retry-after in (possibly fractional) seconds becomes retry_after."""
    error = await failure(
        [error_body("slow", "requests")], status=429, headers={"Retry-After": header}
    )
    assert error.retry_after == seconds


async def test_rate_limit_retry_after_http_date_in_the_past() -> None:
    """An HTTP-date retry-after already past means retry now (0), never negative."""
    error = await failure(
        [error_body("slow", "requests")],
        status=429,
        headers={"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"},
    )
    assert error.retry_after == 0.0


def test_parse_retry_after_http_date() -> None:
    """An HTTP-date retry-after is the seconds from now until that date."""
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    headers = {"retry-after": "Wed, 21 Oct 2015 07:28:30 GMT"}
    assert parse_retry_after(headers, now=now) == 30.0


@pytest.mark.parametrize(
    "headers",
    [{}, {"retry-after": "soon"}, {"retry-after-ms": "x"}, {"x-other": "1"}],
)
def test_parse_retry_after_absent_or_unparseable(headers: dict[str, str]) -> None:
    """No usable hint is None."""
    assert parse_retry_after(headers) is None


def test_parse_retry_after_bad_ms_falls_back_to_seconds() -> None:
    """An unparseable retry-after-ms falls back to retry-after."""
    assert parse_retry_after({"retry-after-ms": "x", "retry-after": "3"}) == 3.0


async def test_rate_limit_retry_after_future_date() -> None:
    """A future HTTP-date gives the seconds until then (bounded by the header's value)."""
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 3600))
    error = await failure(
        [error_body("slow", "requests")], status=429, headers={"retry-after": when}
    )
    assert error.retry_after is not None
    assert 3000 < error.retry_after <= 3600


async def test_insufficient_quota_is_not_retryable() -> None:
    """A 429 insufficient_quota is QuotaExhausted: waiting cannot fix it."""
    error = await failure(
        [
            error_body(
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                "insufficient_quota",
            )
        ],
        status=429,
    )
    assert type(error) is QuotaExhausted
    assert isinstance(error, RateLimited)
    assert error.retryable is False


@pytest.mark.parametrize(
    ("status", "header", "retryable"),
    [(500, "false", False), (400, "true", True), (429, "false", False), (401, "true", True)],
)
async def test_x_should_retry_overrides(status: int, header: str, retryable: bool) -> None:
    """x-should-retry: true|false overrides the status's retry policy."""
    error = await failure(
        [error_body("x", "server_error")], status=status, headers={"x-should-retry": header}
    )
    assert error.retryable is retryable


async def test_error_body_that_is_not_json() -> None:
    """A non-JSON error body (a proxy's HTML page) gives its start as the message."""
    error = await failure([b"<html><body>Bad gateway</body></html>"], status=502)
    assert type(error) is ServerError
    assert "Bad gateway" in str(error)


async def test_error_body_string_error() -> None:
    """{"error": "..."} (Ollama /v1, some proxies) is understood."""
    error = await failure([b'{"error": "model not found"}'], status=404)
    assert type(error) is BadRequest
    assert str(error) == "model not found"


async def test_empty_error_body() -> None:
    """An empty error body still gives a typed error naming the status."""
    error = await failure([], status=503)
    assert type(error) is ServerError
    assert "503" in str(error)


async def test_error_body_echoing_the_key_is_redacted() -> None:
    """A key echoed in an error message is masked."""
    error = await failure(
        [error_body(f"Incorrect API key provided: {KEY}.", "invalid_request_error")], status=401
    )
    assert isinstance(error, AuthenticationError)
    assert KEY not in str(error)
    assert KEY not in repr(error)
    assert KEY not in pickle.dumps(error).decode("latin-1")


# --- chunk boundaries -----------------------------------------------------------------------

STREAM = b"".join(
    [
        ROLE,
        b": keep-alive\n\n",
        sse(chunk({"reasoning_content": "Think "})),
        sse(chunk({"reasoning_content": "é😀"})),
        text("Héllo, "),
        text("wörld 😀"),
        sse(chunk({"tool_calls": [tool_delta(0, "", id="call_a", name="weather")]})),
        sse(chunk({"tool_calls": [tool_delta(1, '{"tz":', id="call_b", name="time")]})),
        sse(chunk({"tool_calls": [tool_delta(0, '{"city": "Zürich"}')]})),
        sse(chunk({"tool_calls": [tool_delta(1, ' "CET"}')]})),
        sse(chunk({}, finish="tool_calls")),
        usage_chunk(9, 10),
        DONE,
    ]
)


def _expected(response: rxllm.Response) -> None:
    assert response.reasoning == "Think é😀"
    assert response.text == "Héllo, wörld 😀"
    assert [(c.id, c.arguments) for c in response.tool_calls] == [
        ("call_a", {"city": "Zürich"}),
        ("call_b", {"tz": "CET"}),
    ]
    assert response.finish_reason == "tool_calls"
    assert response.usage == Usage(input_tokens=9, output_tokens=10, total_tokens=19)


async def test_every_chunk_boundary() -> None:
    """Splitting the stream in two at every byte offset decodes to the same Response."""
    whole = await collect([STREAM])
    _expected(whole)
    for cut in range(len(STREAM) + 1):
        assert await collect([STREAM[:cut], STREAM[cut:]]) == whole, cut


async def test_every_chunk_boundary_crlf() -> None:
    """The CRLF form of the stream split at every offset decodes the same."""
    crlf = STREAM.replace(b"\n", b"\r\n")
    whole = await collect([crlf])
    _expected(whole)
    for cut in range(len(crlf) + 1):
        assert await collect([crlf[:cut], crlf[cut:]]) == whole, cut


async def test_byte_by_byte() -> None:
    """Feeding one byte per read decodes to the same Response."""
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
