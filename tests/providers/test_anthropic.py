"""The Anthropic Messages dialect: request encoding, stream decoding, error mapping.

Streams are written here from the documented shapes (wire-formats.md section 3).
"""

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
    QuotaExhausted,
    RateLimited,
    RequestTimeout,
    ServerError,
    StreamInterrupted,
    WireError,
)
from rxllm.events import (
    Event,
    Finished,
    ReasoningDelta,
    Started,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from rxllm.providers import get_dialect
from rxllm.providers._anthropic import AnthropicDialect
from rxllm.providers._tools import MAX_ARGUMENTS_BYTES
from rxllm.request import Message, Request, Tool, ToolCallRef

KEY = "sk-ant-api03-SECRETSECRETSECRET"
HEADERS = {"content-type": "text/event-stream", "request-id": "req_011"}


def sse(event: str, payload: dict[str, Any]) -> bytes:
    """One Anthropic SSE event: an ``event:`` line and the payload with ``type`` repeated."""
    return f"event: {event}\ndata: {orjson.dumps({'type': event, **payload}).decode()}\n\n".encode()


def message_start(input_tokens: int = 25, **usage: int) -> bytes:
    return sse(
        "message_start",
        {
            "message": {
                "id": "msg_01XYZ",
                "type": "message",
                "role": "assistant",
                "model": "claude-test",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": 1, **usage},
            }
        },
    )


def block_start(index: int, block: dict[str, Any]) -> bytes:
    return sse("content_block_start", {"index": index, "content_block": block})


def delta(index: int, d: dict[str, Any]) -> bytes:
    return sse("content_block_delta", {"index": index, "delta": d})


def text(index: int, t: str) -> bytes:
    return delta(index, {"type": "text_delta", "text": t})


def block_stop(index: int) -> bytes:
    return sse("content_block_stop", {"index": index})


def message_delta(stop_reason: str | None, **usage: int) -> bytes:
    return sse(
        "message_delta",
        {"delta": {"stop_reason": stop_reason, "stop_sequence": None}, "usage": usage},
    )


PING = b'event: ping\ndata: {"type": "ping"}\n\n'
STOP = sse("message_stop", {})

TEXT_STREAM = b"".join(
    [
        message_start(),
        block_start(0, {"type": "text", "text": ""}),
        PING,
        text(0, "Hello"),
        text(0, ", w\u00f6rld \u6f22\u5b57 \U0001f600"),
        block_stop(0),
        message_delta("end_turn", output_tokens=15),
        STOP,
    ]
)

TOOL_STREAM = b"".join(
    [
        message_start(40),
        block_start(0, {"type": "text", "text": ""}),
        text(0, "Let me check."),
        block_stop(0),
        block_start(1, {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {}}),
        delta(1, {"type": "input_json_delta", "partial_json": ""}),
        delta(1, {"type": "input_json_delta", "partial_json": '{"city": "Par'}),
        PING,
        delta(1, {"type": "input_json_delta", "partial_json": 'is", "unit": "c'}),
        delta(1, {"type": "input_json_delta", "partial_json": '"}'}),
        block_stop(1),
        block_start(2, {"type": "tool_use", "id": "toolu_01B", "name": "get_time", "input": {}}),
        delta(2, {"type": "input_json_delta", "partial_json": ""}),
        block_stop(2),
        message_delta("tool_use", output_tokens=60),
        STOP,
    ]
)

THINKING_STREAM = b"".join(
    [
        message_start(12),
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        delta(0, {"type": "thinking_delta", "thinking": "Two plus two "}),
        delta(0, {"type": "thinking_delta", "thinking": ""}),
        delta(0, {"type": "thinking_delta", "thinking": "is four."}),
        delta(0, {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA"}),
        block_stop(0),
        block_start(1, {"type": "text", "text": ""}),
        text(1, "4"),
        block_stop(1),
        message_delta("end_turn", output_tokens=30),
        STOP,
    ]
)


def events_of(chunks: list[bytes], **kwargs: Any) -> tuple[list[Event], Exception | None]:
    """Every event a replay emits, and the error it ends with (``None`` on completion)."""
    got: list[Event] = []
    errors: list[Exception] = []
    kwargs.setdefault("headers", HEADERS)
    rxllm.replay("anthropic", chunks, **kwargs).subscribe(got.append, errors.append)
    return got, errors[0] if errors else None


async def collect(chunks: list[bytes], **kwargs: Any) -> rxllm.Response:
    kwargs.setdefault("headers", HEADERS)
    return await rxllm.collect(rxllm.replay("anthropic", chunks, model="claude-test", **kwargs))


def call_for(request: Request, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    kwargs.setdefault("model", "claude-test")
    kwargs.setdefault("base_url", AnthropicDialect.default_base_url)
    kwargs.setdefault("api_key", KEY)
    call = AnthropicDialect().build_call(request, **kwargs)
    return call, orjson.loads(call.body)


# --- build_call -------------------------------------------------------------------------------


def test_registry_returns_the_anthropic_dialect() -> None:
    """get_dialect("anthropic") is an AnthropicDialect with the documented class attributes."""
    d: object = get_dialect("anthropic")
    assert isinstance(d, AnthropicDialect)
    assert d.default_base_url == "https://api.anthropic.com"
    assert d.api_key_env == ("ANTHROPIC_API_KEY",)
    assert d.request_id_header == "request-id"
    assert d.stream_content_type == "text/event-stream"


def test_build_call_url_headers_and_minimal_body() -> None:
    """A one-turn request is a streaming POST to /v1/messages with version and key headers."""
    call, body = call_for(Request.of("Hi"))
    assert call.method == "POST"
    assert call.url == "https://api.anthropic.com/v1/messages"
    assert call.headers["x-api-key"] == KEY
    assert call.headers["anthropic-version"] == "2023-06-01"
    assert call.headers["content-type"] == "application/json"
    assert call.headers["accept"] == "text/event-stream"
    assert body == {
        "model": "claude-test",
        "max_tokens": 4096,
        "stream": True,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    }


def test_api_key_is_only_in_headers() -> None:
    """The key is in the x-api-key header only: not in the URL, body or repr, and no pickle."""
    call, _ = call_for(Request.of("Hi"))
    assert KEY not in repr(call)
    assert KEY not in call.url
    assert KEY.encode() not in call.body
    with pytest.raises(TypeError):
        pickle.dumps(call)


def test_no_api_key_sends_no_key_header() -> None:
    """Without a key (a proxy that injects it) no x-api-key header is sent."""
    call, _ = call_for(Request.of("Hi"), api_key=None)
    assert "x-api-key" not in call.headers


@pytest.mark.parametrize(
    "base_url",
    ["http://127.0.0.1:8080", "http://127.0.0.1:8080/", "http://127.0.0.1:8080/v1"],
)
def test_base_url_forms(base_url: str) -> None:
    """A base URL with or without a trailing slash or /v1 gives the same endpoint."""
    call, _ = call_for(Request.of("Hi"), base_url=base_url)
    assert call.url == "http://127.0.0.1:8080/v1/messages"


def test_explicit_max_tokens_and_sampling_controls() -> None:
    """max_tokens, temperature and stop map to max_tokens, temperature and stop_sequences."""
    _, body = call_for(Request.of("Hi", max_tokens=50, temperature=0.2, stop=("END", "##")))
    assert body["max_tokens"] == 50
    assert body["temperature"] == 0.2
    assert body["stop_sequences"] == ["END", "##"]


def test_system_messages_become_top_level_system() -> None:
    """System messages are joined into the top-level system field, not sent as turns."""
    request = Request().with_messages(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Hi"},
        ]
    )
    _, body = call_for(request)
    assert body["system"] == "Be brief.\n\nAnswer in French."
    assert [m["role"] for m in body["messages"]] == ["user"]


def test_tool_history_maps_to_tool_use_and_tool_result_blocks() -> None:
    """Assistant calls become tool_use blocks; results of parallel calls share one user turn."""
    request = Request(
        messages=(
            Message(role="user", content="Weather and time in Paris?"),
            Message(
                role="assistant",
                content="Checking.",
                tool_calls=(
                    ToolCallRef(id="toolu_1", name="get_weather", arguments={"city": "Paris"}),
                    ToolCallRef(id="toolu_2", name="get_time", arguments={}),
                ),
            ),
            Message(role="tool", tool_call_id="toolu_1", content='{"temp": 21}'),
            Message(role="tool", tool_call_id="toolu_2", content="14:05"),
            Message(role="user", content="Thanks. And tomorrow?"),
        )
    )
    _, body = call_for(request)
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather and time in Paris?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": '{"temp": 21}'},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "14:05"},
                {"type": "text", "text": "Thanks. And tomorrow?"},
            ],
        },
    ]


def test_consecutive_user_messages_are_merged() -> None:
    """Two user messages in a row become one user turn with two text blocks."""
    _, body = call_for(
        Request().with_messages([{"role": "user", "content": "a"}, {"content": "b"}])
    )
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]


def test_empty_message_is_a_config_error() -> None:
    """A turn with no content at all is refused before any request is made."""
    with pytest.raises(ConfigError, match="empty user message"):
        call_for(Request().with_messages([{"role": "user", "content": ""}]))


def test_tools_are_sent_with_input_schema() -> None:
    """Tools map to name, description and input_schema."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    request = Request.of(
        "Hi",
        tools=[Tool(name="get_weather", description="Weather now", parameters=schema)],
    )
    _, body = call_for(request)
    assert body["tools"] == [
        {"name": "get_weather", "description": "Weather now", "input_schema": schema}
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ("get_weather", {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tool_choice_mapping(choice: str, expected: dict[str, Any]) -> None:
    """tool_choice maps to auto, any (required), none or a named tool."""
    request = Request.of("Hi", tools=[Tool(name="get_weather")], tool_choice=choice)
    _, body = call_for(request)
    assert body["tool_choice"] == expected


def test_response_schema_uses_output_config_format() -> None:
    """A response schema is sent as output_config.format of type json_schema."""
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    _, body = call_for(Request.of("Hi", response_schema=schema))
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}


def test_extra_is_merged_last() -> None:
    """extra overrides computed fields and merges into a computed mapping one level deep."""
    schema = {"type": "object"}
    request = Request.of(
        "Hi",
        max_tokens=10,
        response_schema=schema,
        extra={"max_tokens": 99, "top_k": 5, "output_config": {"effort": "low"}},
    )
    _, body = call_for(request)
    assert body["max_tokens"] == 99
    assert body["top_k"] == 5
    assert body["output_config"] == {
        "format": {"type": "json_schema", "schema": schema},
        "effort": "low",
    }


# --- decoding ---------------------------------------------------------------------------------


async def test_text_stream_collects_text_usage_and_finish() -> None:
    """A text stream folds into its text, end_turn -> stop, usage and the request id."""
    r = await collect([TEXT_STREAM])
    assert r.text == "Hello, w\u00f6rld \u6f22\u5b57 \U0001f600"
    assert r.finish_reason == "stop"
    assert r.native_finish_reason == "end_turn"
    assert r.usage is not None
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.total_tokens) == (25, 15, 40)
    assert (r.provider, r.model, r.request_id) == ("anthropic", "claude-test", "req_011")


def test_text_stream_event_sequence() -> None:
    """The events are Started, Usage, the text deltas, Usage, then Finished."""
    events, error = events_of([TEXT_STREAM])
    assert error is None
    assert events == [
        Started(provider="anthropic", model="replay", request_id="req_011"),
        Usage(input_tokens=25, output_tokens=1, total_tokens=26),
        TextDelta(text="Hello"),
        TextDelta(text=", w\u00f6rld \u6f22\u5b57 \U0001f600"),
        Usage(input_tokens=25, output_tokens=15, total_tokens=40),
        Finished(reason="stop", native_reason="end_turn"),
    ]


async def test_reasoning_with_signature() -> None:
    """Thinking deltas are reasoning; the signature_delta is a ReasoningDelta with no text."""
    r = await collect([THINKING_STREAM])
    assert r.reasoning == "Two plus two is four."
    assert r.reasoning_signature == "EqQBCgIYAhIM1gbcDa9GJwZA"
    assert r.text == "4"
    events, _ = events_of([THINKING_STREAM])
    reasoning = [e for e in events if isinstance(e, ReasoningDelta)]
    assert reasoning == [
        ReasoningDelta(text="Two plus two "),
        ReasoningDelta(text="is four."),
        ReasoningDelta(text="", signature="EqQBCgIYAhIM1gbcDa9GJwZA"),
    ]


async def test_tool_calls_with_fragments_and_a_no_arg_tool() -> None:
    """Fragments join into parsed input at block stop; a tool streaming only "" gets {}."""
    r = await collect([TOOL_STREAM])
    assert r.text == "Let me check."
    assert r.tool_calls == (
        ToolCall(
            index=1, id="toolu_01A", name="get_weather", arguments={"city": "Paris", "unit": "c"}
        ),
        ToolCall(index=2, id="toolu_01B", name="get_time", arguments={}),
    )
    assert r.pending_tool_calls == ()
    assert r.finish_reason == "tool_calls"
    assert r.native_finish_reason == "tool_use"


def test_tool_call_deltas_are_keyed_by_block_index() -> None:
    """The block start gives id and name; each non-empty fragment is a delta at that index."""
    events, _ = events_of([TOOL_STREAM])
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert deltas == [
        ToolCallDelta(index=1, id="toolu_01A", name="get_weather"),
        ToolCallDelta(index=1, arguments='{"city": "Par'),
        ToolCallDelta(index=1, arguments='is", "unit": "c'),
        ToolCallDelta(index=1, arguments='"}'),
        ToolCallDelta(index=2, id="toolu_01B", name="get_time"),
    ]


async def test_tool_input_given_whole_at_block_start() -> None:
    """A tool_use block whose start carries the whole input and no fragments keeps it."""
    stream = [
        message_start(),
        block_start(0, {"type": "tool_use", "id": "toolu_3", "name": "f", "input": {"k": [1]}}),
        block_stop(0),
        message_delta("tool_use", output_tokens=4),
        STOP,
    ]
    r = await collect(stream)
    assert r.tool_calls == (ToolCall(index=0, id="toolu_3", name="f", arguments={"k": [1]}),)


async def test_unstopped_tool_block_is_completed_at_message_stop() -> None:
    """A tool_use block never stopped is still completed when message_stop arrives."""
    stream = [
        message_start(),
        block_start(0, {"type": "tool_use", "id": "toolu_4", "name": "f", "input": {}}),
        delta(0, {"type": "input_json_delta", "partial_json": '{"x": 2}'}),
        message_delta("tool_use", output_tokens=4),
        STOP,
    ]
    r = await collect(stream)
    assert r.tool_calls == (ToolCall(index=0, id="toolu_4", name="f", arguments={"x": 2}),)
    assert r.pending_tool_calls == ()


async def test_cumulative_usage_is_never_summed() -> None:
    """message_delta usage is cumulative: the last one wins; repeated input counts replace."""
    stream = b"".join(
        [
            message_start(10, cache_read_input_tokens=100, cache_creation_input_tokens=5),
            block_start(0, {"type": "text", "text": ""}),
            text(0, "x"),
            block_stop(0),
            message_delta(None, output_tokens=7),
            message_delta("end_turn", output_tokens=20, input_tokens=12),
            STOP,
        ]
    )
    events, _ = events_of([stream])
    usages = [e for e in events if isinstance(e, Usage)]
    assert usages == [
        Usage(input_tokens=115, output_tokens=1, total_tokens=116, cached_tokens=100),
        Usage(input_tokens=115, output_tokens=7, total_tokens=122, cached_tokens=100),
        Usage(input_tokens=117, output_tokens=20, total_tokens=137, cached_tokens=100),
    ]
    r = await collect([stream])
    assert r.usage == usages[-1]


@pytest.mark.parametrize(
    ("native", "reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("some_future_reason", "stop"),
    ],
)
async def test_stop_reason_mapping(native: str, reason: str) -> None:
    """Each stop_reason maps to its normalized reason and is kept as the native reason."""
    stream = [message_start(), block_start(0, {"type": "text", "text": ""}), text(0, "a")]
    stream += [block_stop(0), message_delta(native, output_tokens=2), STOP]
    r = await collect(stream)
    assert (r.finish_reason, r.native_finish_reason) == (reason, native)


async def test_pings_and_unknown_types_are_ignored() -> None:
    """ping, unknown event types, unknown deltas and server-tool blocks change nothing."""
    stream = [
        PING,
        message_start(),
        sse("future_event", {"x": 1}),
        block_start(0, {"type": "text", "text": ""}),
        PING,
        text(0, "Hi"),
        delta(0, {"type": "citations_delta", "citation": {"cited_text": "x"}}),
        delta(0, {"type": "future_delta", "y": 2}),
        block_stop(0),
        block_start(1, {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search"}),
        delta(1, {"type": "input_json_delta", "partial_json": '{"query": "x"}'}),
        block_stop(1),
        block_start(2, {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1"}),
        block_stop(2),
        PING,
        message_delta("end_turn", output_tokens=3),
        STOP,
    ]
    r = await collect(stream)
    assert r.text == "Hi"
    assert r.tool_calls == ()
    assert r.finish_reason == "stop"


async def test_padded_json_is_parsed_as_json() -> None:
    """Payloads with spaces before their closing brace decode like compact ones."""
    stream = (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":'
        b'"message","role":"assistant","content":[],"model":"claude-test","stop_reason":null,'
        b'"usage":{"input_tokens":9,"output_tokens":1}   }   }\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"tool_use","id":"toolu_9","name":"f","input":{}  }   }\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"input_json_delta","partial_json":"{\\"a\\": 1}"}      }\n\n'
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0        }\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":'
        b'"tool_use","stop_sequence":null},"usage":{"output_tokens":5}   }\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"     }\n\n'
    )
    r = await collect([stream])
    assert r.tool_calls == (ToolCall(index=0, id="toolu_9", name="f", arguments={"a": 1}),)
    assert r.finish_reason == "tool_calls"
    assert r.usage is not None
    assert r.usage.total_tokens == 14


async def test_crlf_framing_decodes_the_same() -> None:
    """The same stream with CRLF line ends gives the same Response."""
    expected = await collect([TOOL_STREAM])
    assert await collect([TOOL_STREAM.replace(b"\n", b"\r\n")]) == expected


async def test_event_without_event_line_is_decoded_by_payload_type() -> None:
    """A payload without an event: line is still decoded by its type field."""
    stream = TEXT_STREAM.replace(b"event: content_block_delta\n", b"")
    r = await collect([stream])
    assert r.text.startswith("Hello")


# --- in-band errors, truncation, malformed frames ----------------------------------------------


def error_event(etype: str, message: str = "Overloaded") -> bytes:
    return sse(
        "error",
        {
            "error": {"details": None, "type": etype, "message": message},
            "request_id": "req_err_1",
        },
    )


async def test_inband_error_before_content_is_the_typed_error() -> None:
    """An overloaded_error event before content raises Overloaded: retryable, status 200."""
    with pytest.raises(Overloaded) as info:
        await collect([message_start(), PING, error_event("overloaded_error")])
    err = info.value
    assert err.status == 200
    assert err.code == "overloaded_error"
    assert err.retryable is True
    assert err.request_id == "req_err_1"
    assert err.provider == "anthropic"
    assert str(err) == "Overloaded"


@pytest.mark.parametrize(
    ("etype", "cls", "retryable"),
    [
        ("overloaded_error", Overloaded, True),
        ("rate_limit_error", RateLimited, True),
        ("api_error", ServerError, True),
        ("invalid_request_error", BadRequest, False),
        ("authentication_error", AuthenticationError, False),
        ("permission_error", AuthenticationError, False),
        ("not_found_error", BadRequest, False),
        ("request_too_large", BadRequest, False),
        ("timeout_error", RequestTimeout, True),
        ("billing_error", QuotaExhausted, False),
        ("mystery_error", ServerError, True),
    ],
)
def test_inband_error_types(etype: str, cls: type[ProviderError], retryable: bool) -> None:
    """Each in-band error.type maps to its class, with the type as code."""
    _, error = events_of([message_start(), error_event(etype, "boom")])
    assert type(error) is cls
    assert isinstance(error, ProviderError)
    assert (error.code, error.retryable, error.status) == (etype, retryable, 200)


def test_inband_rate_limit_naming_a_spend_limit_is_quota_exhausted() -> None:
    """An in-band rate_limit_error about the spend limit is QuotaExhausted, not retryable."""
    event = sse(
        "error",
        {
            "error": {
                "type": "rate_limit_error",
                "message": "spend limit reached",
                "details": {"error_code": "enforced_spend_limit_reached"},
            }
        },
    )
    _, error = events_of([message_start(), event])
    assert isinstance(error, QuotaExhausted)
    assert error.retryable is False


async def test_inband_error_after_content_interrupts_with_exact_partial() -> None:
    """After text, an error event ends with StreamInterrupted carrying the text and the cause."""
    stream = [
        message_start(),
        block_start(0, {"type": "text", "text": ""}),
        text(0, "Once upon"),
        text(0, " a time"),
        error_event("overloaded_error"),
    ]
    with pytest.raises(StreamInterrupted) as info:
        await collect(stream)
    err = info.value
    assert not isinstance(err, IncompleteStream)
    assert err.partial.text == "Once upon a time"
    assert err.partial.finish_reason is None
    assert isinstance(err.cause, Overloaded)
    assert err.cause.retryable is True


async def test_stream_cut_before_message_stop_is_incomplete() -> None:
    """A body that ends without message_stop is IncompleteStream with the partial text."""
    stream = [message_start(), block_start(0, {"type": "text", "text": ""}), text(0, "Half")]
    with pytest.raises(IncompleteStream) as info:
        await collect(stream)
    assert info.value.partial.text == "Half"


async def test_stream_cut_inside_a_tool_call_keeps_the_pending_call() -> None:
    """A cut inside a tool_use block leaves the call pending with its fragments so far."""
    stream = [
        message_start(),
        block_start(0, {"type": "tool_use", "id": "toolu_7", "name": "f", "input": {}}),
        delta(0, {"type": "input_json_delta", "partial_json": '{"a": '}),
    ]
    with pytest.raises(IncompleteStream) as info:
        await collect(stream)
    (pending,) = info.value.partial.pending_tool_calls
    assert (pending.index, pending.id, pending.name, pending.arguments) == (
        0,
        "toolu_7",
        "f",
        '{"a": ',
    )


async def test_malformed_frame_before_content_is_malformed_frame() -> None:
    """A data line that is not JSON fails the stream with MalformedFrame."""
    with pytest.raises(MalformedFrame):
        await collect([message_start(), b"event: content_block_delta\ndata: {not json\n\n"])


async def test_malformed_frame_after_content_interrupts() -> None:
    """A malformed frame after text is StreamInterrupted whose cause is MalformedFrame."""
    stream = [
        message_start(),
        block_start(0, {"type": "text", "text": ""}),
        text(0, "ok"),
        b"event: content_block_delta\ndata: [1, 2]\n\n",
        text(0, "never"),
    ]
    with pytest.raises(StreamInterrupted) as info:
        await collect(stream)
    assert info.value.partial.text == "ok"
    assert isinstance(info.value.cause, MalformedFrame)


async def test_invalid_tool_input_json_is_malformed() -> None:
    """Tool input fragments that do not join into a JSON object fail with MalformedFrame."""
    stream = [
        message_start(),
        block_start(0, {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}),
        delta(0, {"type": "input_json_delta", "partial_json": '{"a": tru'}),
        block_stop(0),
        message_delta("tool_use", output_tokens=3),
        STOP,
    ]
    with pytest.raises(StreamInterrupted) as info:
        await collect(stream)
    assert isinstance(info.value.cause, MalformedFrame)


async def test_tool_arguments_are_bounded() -> None:
    """Tool input larger than MAX_ARGUMENTS_BYTES fails with FrameTooLarge."""
    piece = "x" * (MAX_ARGUMENTS_BYTES // 2 + 1)
    stream = [
        message_start(),
        block_start(0, {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}),
        delta(0, {"type": "input_json_delta", "partial_json": '{"a": "' + piece}),
        delta(0, {"type": "input_json_delta", "partial_json": piece}),
    ]
    with pytest.raises(StreamInterrupted) as info:
        await collect(stream)
    assert isinstance(info.value.cause, FrameTooLarge)
    assert info.value.cause.limit == MAX_ARGUMENTS_BYTES


# --- HTTP errors ------------------------------------------------------------------------------


def error_body(etype: str, message: str, **extra: Any) -> bytes:
    err = {"type": etype, "message": message, **extra}
    return orjson.dumps({"type": "error", "error": err, "request_id": "req_body_1"})


@pytest.mark.parametrize(
    ("status", "etype", "cls", "retryable"),
    [
        (400, "invalid_request_error", BadRequest, False),
        (401, "authentication_error", AuthenticationError, False),
        (403, "permission_error", AuthenticationError, False),
        (404, "not_found_error", BadRequest, False),
        (413, "request_too_large", BadRequest, False),
        (429, "rate_limit_error", RateLimited, True),
        (500, "api_error", ServerError, True),
        (529, "overloaded_error", Overloaded, True),
    ],
)
def test_parse_error_status_mapping(
    status: int, etype: str, cls: type[ProviderError], retryable: bool
) -> None:
    """Each documented status maps to its class with the error type as code."""
    err = AnthropicDialect().parse_error(
        status, {"request-id": "req_hdr_1"}, error_body(etype, "nope")
    )
    assert type(err) is cls
    assert (err.status, err.code, err.retryable, err.message) == (status, etype, retryable, "nope")
    assert err.request_id == "req_hdr_1"
    assert err.provider == "anthropic"


def test_parse_error_retry_after_and_should_retry() -> None:
    """retry-after is read in seconds and x-should-retry overrides retryable."""
    d = AnthropicDialect()
    err = d.parse_error(429, {"retry-after": "17"}, error_body("rate_limit_error", "slow down"))
    assert isinstance(err, RateLimited)
    assert err.retry_after == 17.0
    err = d.parse_error(
        529, {"x-should-retry": "false"}, error_body("overloaded_error", "Overloaded")
    )
    assert isinstance(err, Overloaded)
    assert err.retryable is False
    err = d.parse_error(400, {"x-should-retry": "true"}, error_body("invalid_request_error", "x"))
    assert err.retryable is True


def test_parse_error_request_id_from_body_without_header() -> None:
    """Without a request-id header the body's request_id is used."""
    err = AnthropicDialect().parse_error(500, {}, error_body("api_error", "oops"))
    assert err.request_id == "req_body_1"


def test_parse_error_spend_limit_429_is_quota_exhausted() -> None:
    """A 429 with details.error_code enforced_spend_limit_reached is QuotaExhausted."""
    body = error_body(
        "rate_limit_error",
        "You have reached your specified API usage limits.",
        details={"error_code": "enforced_spend_limit_reached"},
    )
    err = AnthropicDialect().parse_error(429, {}, body)
    assert isinstance(err, QuotaExhausted)
    assert err.retryable is False
    assert err.code == "rate_limit_error"


def test_parse_error_non_json_body() -> None:
    """A non-JSON body (a proxy's HTML page) still maps by status, with its text."""
    err = AnthropicDialect().parse_error(502, {}, b"<html>Bad gateway</html>")
    assert isinstance(err, ServerError)
    assert err.status == 502
    assert "Bad gateway" in err.message


def test_parse_error_redacts_keys() -> None:
    """An error message that echoes an API key does not keep it."""
    err = AnthropicDialect().parse_error(
        401, {}, error_body("authentication_error", f"invalid x-api-key {KEY}")
    )
    assert KEY not in str(err)
    assert KEY not in repr(err)


async def test_replay_with_error_status_raises_the_typed_error() -> None:
    """replay() with a 529 status raises Overloaded from the body."""
    with pytest.raises(Overloaded) as info:
        await collect(
            [error_body("overloaded_error", "Overloaded")],
            status=529,
            headers={"retry-after": "3", "content-type": "application/json"},
        )
    assert info.value.retry_after == 3.0


# --- chunking ---------------------------------------------------------------------------------


async def test_every_chunk_boundary_gives_the_same_response() -> None:
    """The stream split at every byte offset folds into the same Response."""
    for stream in (TEXT_STREAM, TOOL_STREAM, THINKING_STREAM):
        expected = await collect([stream])
        for cut in range(1, len(stream)):
            assert await collect([stream[:cut], stream[cut:]]) == expected, cut


def test_byte_by_byte_gives_the_same_events() -> None:
    """Feeding one byte at a time gives exactly the events of one read."""
    for stream in (TEXT_STREAM, TOOL_STREAM, THINKING_STREAM):
        expected, error = events_of([stream])
        assert error is None
        assert events_of([stream[i : i + 1] for i in range(len(stream))]) == (expected, None)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([TEXT_STREAM, TOOL_STREAM, THINKING_STREAM]),
    st.lists(st.integers(min_value=0, max_value=4000), max_size=30),
    st.booleans(),
)
def test_any_rechunking_decodes_to_the_same_events(
    stream: bytes, cuts: list[int], crlf: bool
) -> None:
    """Any split of a stream (LF or CRLF framed) decodes to the events of the whole."""
    if crlf:
        stream = stream.replace(b"\n", b"\r\n")
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert events_of(chunks) == events_of([stream])


_words = st.sampled_from(
    [
        "tool_use",
        "text",
        "thinking",
        "text_delta",
        "input_json_delta",
        "thinking_delta",
        "signature_delta",
        "end_turn",
        "overloaded_error",
        '{"a": 1}',
        "",
    ]
)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=5) | _words,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_keys = st.sampled_from(
    [
        "type",
        "index",
        "delta",
        "content_block",
        "message",
        "usage",
        "text",
        "partial_json",
        "thinking",
        "signature",
        "id",
        "name",
        "input",
        "stop_reason",
        "output_tokens",
        "input_tokens",
        "error",
        "message",
    ]
)
_shapes = st.recursive(
    _json,
    lambda inner: st.dictionaries(_keys, inner, max_size=4),
    max_leaves=12,
)
_kinds = st.sampled_from(
    [
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_start",
        "message_delta",
        "message_stop",
        "error",
        "ping",
        "message",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_kinds, _shapes), min_size=1, max_size=4))
def test_any_event_shape_gives_events_or_a_typed_error(items: list[tuple[str, Any]]) -> None:
    """Whatever JSON the events hold, decoding yields events or a typed error, never a crash."""
    body = b"".join(
        f"event: {kind}\ndata: ".encode() + orjson.dumps(value) + b"\n\n" for kind, value in items
    )
    _, error = events_of([body])
    assert error is None or isinstance(error, WireError | ProviderError | StreamInterrupted)
