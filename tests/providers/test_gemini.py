"""The Gemini streamGenerateContent dialect: request encoding, both framings, error mapping.

Streams are written here from the documented shapes (wire-formats.md section 4).
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
    IncompleteStream,
    MalformedFrame,
    Overloaded,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    ServerError,
    StreamInterrupted,
    WireError,
)
from rxllm.events import Event, Finished, ReasoningDelta, Started, TextDelta, ToolCall, Usage
from rxllm.providers import get_dialect
from rxllm.providers._gemini import GeminiDialect
from rxllm.request import Message, Request, Tool, ToolCallRef

KEY = "AIzaSyFAKEFAKEFAKEFAKEFAKEFAKEFAKE123"
SSE_HEADERS = {"content-type": "text/event-stream", "x-request-id": "gem-req-1"}
JSON_HEADERS = {"content-type": "application/json; charset=UTF-8"}


def chunk(
    *parts: dict[str, Any],
    finish: str | None = None,
    usage: tuple[int, ...] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A GenerateContentResponse with candidate 0 holding ``parts``.

    ``usage`` is (prompt, candidates, total) or (prompt, candidates, total, thoughts, cached).
    """
    candidate: dict[str, Any] = {"content": {"parts": list(parts), "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    out: dict[str, Any] = {"candidates": [candidate], **extra}
    if usage:
        meta = {
            "promptTokenCount": usage[0],
            "candidatesTokenCount": usage[1],
            "totalTokenCount": usage[2],
        }
        if len(usage) > 3:
            meta["thoughtsTokenCount"] = usage[3]
            meta["cachedContentTokenCount"] = usage[4]
        out["usageMetadata"] = meta
    out["modelVersion"] = "gemini-test"
    out["responseId"] = "resp-1"
    return out


def sse(*chunks: dict[str, Any]) -> bytes:
    """The ``?alt=sse`` framing: ``data: <json>`` events ending in CRLF CRLF."""
    return b"".join(b"data: " + orjson.dumps(c) + b"\r\n\r\n" for c in chunks)


def array(*chunks: dict[str, Any]) -> bytes:
    """The JSON-array framing: pretty-printed elements separated by LF , CRLF."""
    elements = [orjson.dumps(c, option=orjson.OPT_INDENT_2) for c in chunks]
    return b"[" + b"\n,\r\n".join(elements) + b"\n]"


TEXT = [
    chunk({"text": "Hello"}, usage=(8, 1, 9)),
    chunk({"text": ", w\u00f6rld \u5192\u967a\u4f19\u4f34 \U0001f600"}, usage=(8, 1, 9)),
    chunk({"text": "!"}, finish="STOP", usage=(12, 6, 18)),
]
THOUGHTS = [
    chunk({"text": "Let me think", "thought": True}, usage=(5, 0, 5, 3, 0)),
    chunk({"text": " harder.", "thought": True}, usage=(5, 0, 5, 20, 0)),
    chunk(
        {"text": "42", "thoughtSignature": "CiQBVKhcXsig"}, finish="STOP", usage=(5, 2, 27, 20, 0)
    ),
]
TOOLS = [
    chunk({"text": "Checking."}),
    chunk(
        {
            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
            "thoughtSignature": "s1",
        },
        {"functionCall": {"id": "fc_2", "name": "get_time", "args": {"tz": "CET"}}},
    ),
    chunk({"functionCall": {"name": "noop"}}, finish="STOP", usage=(30, 10, 40)),
]


def events_of(
    chunks: list[bytes], headers: dict[str, str] | None = None, **kwargs: Any
) -> tuple[list[Event], Exception | None]:
    """Every event a replay emits, and the error it ends with (``None`` on completion)."""
    got: list[Event] = []
    errors: list[Exception] = []
    rxllm.replay("gemini", chunks, headers=headers or SSE_HEADERS, **kwargs).subscribe(
        got.append, errors.append
    )
    return got, errors[0] if errors else None


async def collect(
    chunks: list[bytes], headers: dict[str, str] | None = None, **kwargs: Any
) -> rxllm.Response:
    source = rxllm.replay("gemini", chunks, headers=headers or SSE_HEADERS, **kwargs)
    return await rxllm.collect(source)


def call_for(request: Request, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    kwargs.setdefault("model", "gemini-test")
    kwargs.setdefault("base_url", GeminiDialect.default_base_url)
    kwargs.setdefault("api_key", KEY)
    call = GeminiDialect().build_call(request, **kwargs)
    return call, orjson.loads(call.body)


# --- build_call -------------------------------------------------------------------------------


def test_registry_returns_the_gemini_dialect() -> None:
    """get_dialect("gemini") is a GeminiDialect with the documented class attributes."""
    d: object = get_dialect("gemini")
    assert isinstance(d, GeminiDialect)
    assert d.default_base_url == "https://generativelanguage.googleapis.com"
    assert d.api_key_env == ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    assert d.stream_content_type == "text/event-stream"


def test_build_call_url_headers_and_minimal_body() -> None:
    """A one-turn request is a POST to :streamGenerateContent?alt=sse with the key header."""
    call, body = call_for(Request.of("Hi"))
    assert call.method == "POST"
    assert call.url == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-test"
        ":streamGenerateContent?alt=sse"
    )
    assert call.headers["x-goog-api-key"] == KEY
    assert call.headers["content-type"] == "application/json"
    assert body == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}


def test_api_key_is_only_in_headers() -> None:
    """The key is never in the URL, the body or the repr, and the call does not pickle."""
    call, _ = call_for(Request.of("Hi"))
    assert KEY not in call.url
    assert "key=" not in call.url
    assert KEY not in repr(call)
    assert KEY.encode() not in call.body
    with pytest.raises(TypeError):
        pickle.dumps(call)


@pytest.mark.parametrize(
    ("base_url", "model", "url"),
    [
        ("http://127.0.0.1:9/", "gemini-test", "http://127.0.0.1:9/v1beta/models/gemini-test"),
        (
            "http://127.0.0.1:9/v1beta",
            "gemini-test",
            "http://127.0.0.1:9/v1beta/models/gemini-test",
        ),
        ("http://127.0.0.1:9/v1", "models/gemini-x", "http://127.0.0.1:9/v1/models/gemini-x"),
        ("http://127.0.0.1:9", "tunedModels/my-1", "http://127.0.0.1:9/v1beta/tunedModels/my-1"),
    ],
)
def test_base_url_and_model_forms(base_url: str, model: str, url: str) -> None:
    """A versioned base URL is kept, and a model with a slash is used as the resource path."""
    call, _ = call_for(Request.of("Hi"), base_url=base_url, model=model)
    assert call.url == url + ":streamGenerateContent?alt=sse"


def test_system_instruction_and_generation_config() -> None:
    """System text, sampling controls and a response schema map to their Gemini fields."""
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    request = Request.of(
        "Hi",
        system="Be brief.",
        temperature=0.3,
        max_tokens=64,
        stop=("END",),
        response_schema=schema,
    )
    _, body = call_for(request)
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["generationConfig"] == {
        "temperature": 0.3,
        "maxOutputTokens": 64,
        "stopSequences": ["END"],
        "responseMimeType": "application/json",
        "responseJsonSchema": schema,
    }


def test_tool_history_maps_to_function_call_and_response_parts() -> None:
    """Assistant calls are functionCall parts; results are functionResponse parts by name."""
    request = Request(
        messages=(
            Message(role="user", content="Weather and time?"),
            Message(
                role="assistant",
                tool_calls=(
                    ToolCallRef(id="fc_1", name="get_weather", arguments={"city": "Paris"}),
                    ToolCallRef(id="fc_2", name="get_time", arguments={}),
                ),
            ),
            Message(role="tool", tool_call_id="fc_1", content='{"temp": 21}'),
            Message(role="tool", tool_call_id="fc_2", content="14:05", name="get_time"),
            Message(role="user", content="Thanks."),
        )
    )
    _, body = call_for(request)
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Weather and time?"}]},
        {
            "role": "model",
            "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "fc_1"}},
                {"functionCall": {"name": "get_time", "args": {}, "id": "fc_2"}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "name": "get_weather",
                        "response": {"temp": 21},
                        "id": "fc_1",
                    }
                },
                {
                    "functionResponse": {
                        "name": "get_time",
                        "response": {"output": "14:05"},
                        "id": "fc_2",
                    }
                },
                {"text": "Thanks."},
            ],
        },
    ]


def test_tool_result_without_a_known_name_is_a_config_error() -> None:
    """A tool result whose function cannot be named is refused before any request."""
    request = Request.of("x").with_messages(
        [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "c9", "content": "1"}]
    )
    with pytest.raises(ConfigError, match="function name"):
        call_for(request)


def test_empty_message_is_a_config_error() -> None:
    """A turn with no parts at all is refused before any request is made."""
    with pytest.raises(ConfigError, match="empty user message"):
        call_for(Request().with_messages([{"role": "user", "content": ""}]))


def test_tools_are_function_declarations() -> None:
    """Tools are sent as one functionDeclarations entry with JSON Schema parameters."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    request = Request.of(
        "Hi", tools=[Tool(name="get_weather", description="Now", parameters=schema)]
    )
    _, body = call_for(request)
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {"name": "get_weather", "description": "Now", "parametersJsonSchema": schema}
            ]
        }
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        ("get_weather", {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
    ],
)
def test_tool_choice_maps_to_tool_config(choice: str, expected: dict[str, Any]) -> None:
    """tool_choice maps to toolConfig.functionCallingConfig."""
    request = Request.of("Hi", tools=[Tool(name="get_weather")], tool_choice=choice)
    _, body = call_for(request)
    assert body["toolConfig"] == {"functionCallingConfig": expected}


def test_extra_is_merged_last() -> None:
    """extra overrides fields and merges into generationConfig one level deep."""
    request = Request.of(
        "Hi",
        temperature=0.5,
        extra={
            "generationConfig": {"thinkingConfig": {"thinkingBudget": 0}, "temperature": 1.0},
            "safetySettings": [],
        },
    )
    _, body = call_for(request)
    assert body["generationConfig"] == {
        "temperature": 1.0,
        "thinkingConfig": {"thinkingBudget": 0},
    }
    assert body["safetySettings"] == []


# --- decoding: SSE ------------------------------------------------------------------------------


async def test_text_stream_collects_text_usage_and_finish() -> None:
    """An alt=sse stream folds into its text, STOP -> stop, and the last usage."""
    r = await collect([sse(*TEXT)], model="gemini-test")
    assert r.text == "Hello, w\u00f6rld \u5192\u967a\u4f19\u4f34 \U0001f600!"
    assert (r.finish_reason, r.native_finish_reason) == ("stop", "STOP")
    assert r.usage == Usage(input_tokens=12, output_tokens=6, total_tokens=18)
    assert (r.provider, r.model, r.request_id) == ("gemini", "gemini-test", "gem-req-1")


def test_usage_is_emitted_only_when_it_changes() -> None:
    """Running usageMetadata emits a Usage only when a count changed; nothing is summed."""
    events, error = events_of([sse(*TEXT)])
    assert error is None
    assert events == [
        Started(provider="gemini", model="replay", request_id="gem-req-1"),
        TextDelta(text="Hello"),
        Usage(input_tokens=8, output_tokens=1, total_tokens=9),
        TextDelta(text=", w\u00f6rld \u5192\u967a\u4f19\u4f34 \U0001f600"),
        TextDelta(text="!"),
        Usage(input_tokens=12, output_tokens=6, total_tokens=18),
        Finished(reason="stop", native_reason="STOP"),
    ]


async def test_thoughts_and_signature() -> None:
    """Thought parts are reasoning; a thoughtSignature is a ReasoningDelta with no text."""
    r = await collect([sse(*THOUGHTS)])
    assert r.reasoning == "Let me think harder."
    assert r.reasoning_signature == "CiQBVKhcXsig"
    assert r.text == "42"
    assert r.usage == Usage(
        input_tokens=5, output_tokens=22, total_tokens=27, reasoning_tokens=20, cached_tokens=0
    )
    events, _ = events_of([sse(*THOUGHTS)])
    assert [e for e in events if isinstance(e, ReasoningDelta)] == [
        ReasoningDelta(text="Let me think"),
        ReasoningDelta(text=" harder."),
        ReasoningDelta(text="", signature="CiQBVKhcXsig"),
    ]


async def test_function_calls_are_complete_tool_calls() -> None:
    """Each functionCall part is a whole ToolCall, indexed in order; STOP becomes tool_calls."""
    r = await collect([sse(*TOOLS)])
    assert r.text == "Checking."
    assert r.tool_calls == (
        ToolCall(index=0, id=None, name="get_weather", arguments={"city": "Paris"}),
        ToolCall(index=1, id="fc_2", name="get_time", arguments={"tz": "CET"}),
        ToolCall(index=2, id=None, name="noop", arguments={}),
    )
    assert r.reasoning_signature == "s1"
    assert (r.finish_reason, r.native_finish_reason) == ("tool_calls", "STOP")


@pytest.mark.parametrize(
    ("native", "reason"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("IMAGE_SAFETY", "content_filter"),
        ("LANGUAGE", "stop"),
        ("OTHER", "stop"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
    ],
)
async def test_finish_reason_mapping(native: str, reason: str) -> None:
    """Each finishReason maps to its normalized reason and is kept as the native reason."""
    r = await collect([sse(chunk({"text": "a"}), chunk(finish=native))])
    assert (r.finish_reason, r.native_finish_reason) == (reason, native)


async def test_blocked_prompt_is_content_filter() -> None:
    """promptFeedback.blockReason with no candidates finishes with content_filter."""
    blocked = {
        "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
    }
    r = await collect([sse(blocked)])
    assert (r.finish_reason, r.native_finish_reason) == ("content_filter", "SAFETY")
    assert r.text == ""
    assert r.usage == Usage(input_tokens=7, total_tokens=7)


def test_repeated_finish_reason_gives_one_finished() -> None:
    """A finishReason repeated on a trailing chunk does not emit a second Finished."""
    events, error = events_of([sse(chunk({"text": "a"}, finish="STOP"), chunk(finish="STOP"))])
    assert error is None
    assert [e for e in events if isinstance(e, Finished)] == [
        Finished(reason="stop", native_reason="STOP")
    ]


async def test_comments_and_lf_framing_are_accepted() -> None:
    """SSE comments are ignored and LF-only framing decodes like CRLF."""
    body = b": keep-alive\n\n" + sse(*TEXT).replace(b"\r\n", b"\n")
    assert await collect([body]) == await collect([sse(*TEXT)])


async def test_stream_cut_before_finish_reason_is_incomplete() -> None:
    """A body that ends before the finishReason chunk is IncompleteStream with the text."""
    with pytest.raises(IncompleteStream) as info:
        await collect([sse(*TEXT[:2])])
    assert info.value.partial.text.startswith("Hello, w")


async def test_inband_error_before_content_is_the_typed_error() -> None:
    """An error object as the first event raises the typed error with status 200."""
    err_chunk = {
        "error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}
    }
    with pytest.raises(Overloaded) as info:
        await collect([sse(err_chunk)])
    err = info.value
    assert (err.status, err.code, err.retryable) == (200, "UNAVAILABLE", True)
    assert err.provider == "gemini"


async def test_inband_error_after_content_interrupts_with_exact_partial() -> None:
    """An error after text ends with StreamInterrupted: exact partial text, typed cause."""
    err_chunk = {
        "error": {
            "code": 429,
            "message": "Resource has been exhausted.",
            "status": "RESOURCE_EXHAUSTED",
        }
    }
    with pytest.raises(StreamInterrupted) as info:
        await collect([sse(TEXT[0], TEXT[1], err_chunk, TEXT[2])])
    err = info.value
    assert not isinstance(err, IncompleteStream)
    assert err.partial.text == "Hello, w\u00f6rld \u5192\u967a\u4f19\u4f34 \U0001f600"
    assert type(err.cause) is RateLimited


async def test_malformed_event_is_malformed_frame() -> None:
    """A data event that is not JSON fails with MalformedFrame (after content: interrupted)."""
    with pytest.raises(MalformedFrame):
        await collect([b"data: {oops\r\n\r\n"])
    with pytest.raises(StreamInterrupted) as info:
        await collect([sse(TEXT[0]) + b"data: [1, 2]\r\n\r\n"])
    assert isinstance(info.value.cause, MalformedFrame)
    assert info.value.partial.text == "Hello"


async def test_function_call_args_that_are_not_an_object_are_malformed() -> None:
    """functionCall args that are not a JSON object fail with MalformedFrame."""
    with pytest.raises(MalformedFrame):
        await collect([sse(chunk({"functionCall": {"name": "f", "args": [1]}}, finish="STOP"))])


# --- decoding: JSON array -----------------------------------------------------------------------


async def test_array_framing_decodes_like_sse() -> None:
    """The application/json array framing gives the same Response as alt=sse."""
    for stream in (TEXT, THOUGHTS, TOOLS):
        expected = await collect([sse(*stream)], headers={"content-type": "text/event-stream"})
        got = await collect([array(*stream)], headers=JSON_HEADERS)
        assert got == expected


async def test_array_without_closing_bracket_is_incomplete() -> None:
    """An array cut before its closing ] is IncompleteStream even after the finish reason."""
    body = array(*TEXT)
    with pytest.raises(IncompleteStream) as info:
        await collect([body[:-1]], headers=JSON_HEADERS)
    assert info.value.partial.finish_reason == "stop"


async def test_array_closed_without_finish_reason_is_incomplete() -> None:
    """An array that closes without any finishReason is IncompleteStream."""
    with pytest.raises(IncompleteStream) as info:
        await collect([array(*TEXT[:2])], headers=JSON_HEADERS)
    assert info.value.partial.text.startswith("Hello")


async def test_array_wrapped_error_in_a_200_stream() -> None:
    """[{"error": {...}}] in a 200 array stream raises the typed error."""
    body = (
        b'[{\n  "error": {\n    "code": 429,\n'
        b'    "message": "Resource has been exhausted (e.g. check quota).",\n'
        b'    "status": "RESOURCE_EXHAUSTED"\n  }\n}\n]'
    )
    with pytest.raises(RateLimited) as info:
        await collect([body], headers=JSON_HEADERS)
    assert type(info.value) is RateLimited
    assert (info.value.code, info.value.status) == ("RESOURCE_EXHAUSTED", 200)


async def test_array_error_after_content_interrupts() -> None:
    """An error element after text ends with StreamInterrupted keeping the text."""
    body = array(TEXT[0], {"error": {"code": 500, "message": "Internal", "status": "INTERNAL"}})
    with pytest.raises(StreamInterrupted) as info:
        await collect([body], headers=JSON_HEADERS)
    assert info.value.partial.text == "Hello"
    assert type(info.value.cause) is ServerError


async def test_malformed_array_is_malformed_frame() -> None:
    """Bytes that are not a JSON array fail with MalformedFrame."""
    with pytest.raises(MalformedFrame):
        await collect([b'{"candidates": []}'], headers=JSON_HEADERS)


# --- HTTP errors ------------------------------------------------------------------------------


def error_body(code: int, status: str, message: str, details: list[Any] | None = None) -> bytes:
    err: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details is not None:
        err["details"] = details
    return orjson.dumps({"error": err})


@pytest.mark.parametrize(
    ("status", "rpc", "cls", "retryable"),
    [
        (400, "INVALID_ARGUMENT", BadRequest, False),
        (400, "FAILED_PRECONDITION", BadRequest, False),
        (401, "UNAUTHENTICATED", AuthenticationError, False),
        (403, "PERMISSION_DENIED", AuthenticationError, False),
        (404, "NOT_FOUND", BadRequest, False),
        (429, "RESOURCE_EXHAUSTED", RateLimited, True),
        (500, "INTERNAL", ServerError, True),
        (503, "UNAVAILABLE", Overloaded, True),
        (504, "DEADLINE_EXCEEDED", ServerError, True),
    ],
)
def test_parse_error_status_mapping(
    status: int, rpc: str, cls: type[ProviderError], retryable: bool
) -> None:
    """Each status maps to its class, with the status string as code."""
    err = GeminiDialect().parse_error(status, {}, error_body(status, rpc, "msg"))
    assert type(err) is cls
    assert (err.status, err.code, err.retryable, err.message) == (status, rpc, retryable, "msg")
    assert err.provider == "gemini"


def test_parse_error_array_wrapped_and_retry_after() -> None:
    """The array-wrapped body maps the same, and retry-after is honoured."""
    body = b"[" + error_body(503, "UNAVAILABLE", "The model is overloaded.") + b"]"
    err = GeminiDialect().parse_error(503, {"retry-after": "4"}, body)
    assert isinstance(err, Overloaded)
    assert (err.retry_after, err.code) == (4.0, "UNAVAILABLE")


def test_per_minute_quota_429_with_retry_info_is_rate_limited() -> None:
    """A 429 naming a per-minute quota with RetryInfo is RateLimited, retry_after from it."""
    details = [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}],
        },
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "25s"},
    ]
    body = error_body(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota.", details)
    err = GeminiDialect().parse_error(429, {}, body)
    assert type(err) is RateLimited
    assert (err.retryable, err.retry_after) == (True, 25.0)


def test_per_day_quota_429_is_quota_exhausted() -> None:
    """A 429 naming a per-day quota is QuotaExhausted, not retryable."""
    details = [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}],
        },
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "3600s"},
    ]
    body = error_body(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota.", details)
    err = GeminiDialect().parse_error(429, {}, body)
    assert isinstance(err, QuotaExhausted)
    assert err.retryable is False
    assert err.retry_after == 3600.0
    assert err.reset_at is not None


def test_quota_message_without_retry_info_is_quota_exhausted() -> None:
    """A 429 whose message says the quota is exceeded, with no retry delay, is QuotaExhausted."""
    body = error_body(429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Requests'.")
    err = GeminiDialect().parse_error(429, {}, body)
    assert isinstance(err, QuotaExhausted)
    assert err.code == "RESOURCE_EXHAUSTED"


def test_parse_error_non_json_body() -> None:
    """A non-JSON body still maps by status, with its text."""
    err = GeminiDialect().parse_error(502, {}, b"Bad Gateway")
    assert isinstance(err, ServerError)
    assert err.message == "Bad Gateway"


def test_parse_error_redacts_keys() -> None:
    """An error message that echoes the API key does not keep it."""
    body = error_body(400, "INVALID_ARGUMENT", f"API key not valid: {KEY}")
    err = GeminiDialect().parse_error(400, {}, body)
    assert KEY not in str(err)
    assert KEY not in repr(err)


async def test_replay_with_error_status_raises_the_typed_error() -> None:
    """replay() with a 429 status raises RateLimited with the retry-after delay."""
    with pytest.raises(RateLimited) as info:
        await collect(
            [error_body(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted.")],
            status=429,
            headers={"retry-after": "2", "content-type": "application/json"},
        )
    assert info.value.retry_after == 2.0


# --- chunking and robustness --------------------------------------------------------------------

STREAMS = [sse(*TEXT), sse(*THOUGHTS), sse(*TOOLS)]
ARRAYS = [array(*TEXT), array(*TOOLS)]


async def test_every_chunk_boundary_gives_the_same_response() -> None:
    """Each stream split at every byte offset, in both framings, folds into one Response."""
    for streams, headers in ((STREAMS, SSE_HEADERS), (ARRAYS, JSON_HEADERS)):
        for stream in streams:
            expected = await collect([stream], headers=headers)
            for cut in range(1, len(stream)):
                got = await collect([stream[:cut], stream[cut:]], headers=headers)
                assert got == expected, cut


def test_byte_by_byte_gives_the_same_events() -> None:
    """Feeding one byte at a time gives exactly the events of one read, in both framings."""
    for streams, headers in ((STREAMS, SSE_HEADERS), (ARRAYS, JSON_HEADERS)):
        for stream in streams:
            expected = events_of([stream], headers)
            assert expected[1] is None
            assert events_of([stream[i : i + 1] for i in range(len(stream))], headers) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([(s, SSE_HEADERS) for s in STREAMS] + [(a, JSON_HEADERS) for a in ARRAYS]),
    st.lists(st.integers(min_value=0, max_value=4000), max_size=30),
)
def test_any_rechunking_decodes_to_the_same_events(
    case: tuple[bytes, dict[str, str]], cuts: list[int]
) -> None:
    """Any split of a stream, in either framing, decodes to the events of the whole."""
    stream, headers = case
    points = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert events_of(chunks, headers) == events_of([stream], headers)


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.text(max_size=5)
    | st.sampled_from(["STOP", "SAFETY", "UNAVAILABLE", "RESOURCE_EXHAUSTED", "quota exceeded"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_keys = st.sampled_from(
    [
        "candidates",
        "content",
        "parts",
        "text",
        "thought",
        "functionCall",
        "name",
        "args",
        "finishReason",
        "usageMetadata",
        "promptFeedback",
        "blockReason",
        "error",
        "thoughtSignature",
    ]
)
_shapes = st.recursive(
    _json,
    lambda inner: st.dictionaries(_keys, inner, max_size=4) | st.lists(inner, max_size=2),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(_shapes)
def test_any_chunk_shape_gives_events_or_a_typed_error(value: Any) -> None:
    """Whatever JSON a chunk holds, decoding yields events or a typed error, never a crash."""
    _, error = events_of([b"data: " + orjson.dumps(value) + b"\r\n\r\n"])
    assert error is None or isinstance(error, WireError | ProviderError | StreamInterrupted)
