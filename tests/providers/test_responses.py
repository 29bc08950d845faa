"""The OpenAI Responses API dialect (wire-formats.md 2.2): calls, decoding, errors."""

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
    ProviderError,
    QuotaExhausted,
    RateLimited,
    RxllmError,
    ServerError,
    StreamInterrupted,
)
from rxllm.events import Finished, Started, TextDelta, ToolCall, ToolCallDelta, Usage
from rxllm.providers import HttpCall, get_dialect
from rxllm.request import Message, Request, Tool, ToolCallRef

KEY = "sk-test-responses-0123456789abcdef"
BASE = "https://api.example.com/v1"
DIALECT = "openai-responses"


# --- helpers ------------------------------------------------------------------------------


class Seq:
    """Numbers events the way the API does (sequence_number)."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(
        self, type_: str, *, named: bool = True, eol: bytes = b"\n", **fields: Any
    ) -> bytes:
        """One named SSE event whose data.type equals its event: name."""
        payload = {"type": type_, "sequence_number": self.n, **fields}
        self.n += 1
        head = b"event: " + type_.encode() + eol if named else b""
        return head + b"data: " + orjson.dumps(payload) + eol + eol


def usage(inp: int = 10, out: int = 20, reasoning: int = 0, cached: int = 0) -> dict[str, Any]:
    """A Responses usage object."""
    return {
        "input_tokens": inp,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": inp + out,
    }


def created(ev: Seq) -> bytes:
    """response.created and response.in_progress."""
    resp = {"id": "resp_1", "object": "response", "status": "in_progress", "output": []}
    return ev("response.created", response=resp) + ev("response.in_progress", response=resp)


def message(ev: Seq, parts: list[str], *, index: int = 0) -> bytes:
    """A whole message output item streaming ``parts`` as text deltas."""
    item = {"id": "msg_1", "type": "message", "status": "in_progress", "role": "assistant"}
    out = ev("response.output_item.added", output_index=index, item={**item, "content": []})
    out += ev(
        "response.content_part.added",
        item_id="msg_1",
        output_index=index,
        content_index=0,
        part={"type": "output_text", "text": "", "annotations": []},
    )
    for p in parts:
        out += ev(
            "response.output_text.delta",
            item_id="msg_1",
            output_index=index,
            content_index=0,
            delta=p,
            logprobs=[],
        )
    full = "".join(parts)
    out += ev(
        "response.output_text.done", item_id="msg_1", output_index=index, content_index=0, text=full
    )
    out += ev(
        "response.content_part.done",
        item_id="msg_1",
        output_index=index,
        content_index=0,
        part={"type": "output_text", "text": full, "annotations": []},
    )
    done_item = {**item, "status": "completed", "content": [{"type": "output_text", "text": full}]}
    return out + ev("response.output_item.done", output_index=index, item=done_item)


def call_added(ev: Seq, index: int, *, call_id: str, name: str, item_id: str) -> bytes:
    """response.output_item.added for a function call."""
    item = {
        "id": item_id,
        "type": "function_call",
        "status": "in_progress",
        "call_id": call_id,
        "name": name,
        "arguments": "",
    }
    return ev("response.output_item.added", output_index=index, item=item)


def args_delta(ev: Seq, index: int, delta: str, *, item_id: str) -> bytes:
    """response.function_call_arguments.delta."""
    return ev(
        "response.function_call_arguments.delta", item_id=item_id, output_index=index, delta=delta
    )


def args_done(ev: Seq, index: int, arguments: str, *, item_id: str) -> bytes:
    """response.function_call_arguments.done."""
    return ev(
        "response.function_call_arguments.done",
        item_id=item_id,
        output_index=index,
        arguments=arguments,
    )


def call_done(
    ev: Seq, index: int, arguments: str, *, call_id: str, name: str, item_id: str
) -> bytes:
    """response.output_item.done for a function call."""
    item = {
        "id": item_id,
        "type": "function_call",
        "status": "completed",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }
    return ev("response.output_item.done", output_index=index, item=item)


def completed(ev: Seq, use: dict[str, Any] | None = None) -> bytes:
    """response.completed with usage."""
    resp = {"id": "resp_1", "status": "completed", "usage": use or usage()}
    return ev("response.completed", response=resp)


def events(chunks: list[bytes], **kw: Any) -> tuple[list[Any], BaseException | None]:
    """Every event replay emits for ``chunks`` (it is synchronous) and its error."""
    out: list[Any] = []
    errors: list[BaseException] = []
    rxllm.replay(DIALECT, chunks, **kw).subscribe(out.append, errors.append)
    return out, errors[0] if errors else None


async def collect(chunks: list[bytes], **kw: Any) -> rxllm.Response:
    """The Response folded from ``chunks``."""
    return await rxllm.collect(rxllm.replay(DIALECT, chunks, **kw))


async def failure(chunks: list[bytes], **kw: Any) -> Any:
    """The error the replayed stream ends with."""
    with pytest.raises(RxllmError) as info:
        await collect(chunks, **kw)
    return info.value


def build(request: Request, *, api_key: str | None = KEY) -> HttpCall:
    """``build_call`` with the test defaults."""
    return get_dialect(DIALECT).build_call(
        request, model="gpt-test", base_url=BASE + "/", api_key=api_key
    )


def body(call: HttpCall) -> dict[str, Any]:
    """The call's JSON body."""
    result: dict[str, Any] = orjson.loads(call.body)
    return result


# --- build_call ---------------------------------------------------------------------------


def test_dialect_defaults() -> None:
    """The dialect targets api.openai.com/v1 with OPENAI_API_KEY over SSE."""
    d = get_dialect(DIALECT)
    assert d.name == "openai-responses"
    assert d.default_base_url == "https://api.openai.com/v1"
    assert d.api_key_env == ("OPENAI_API_KEY",)
    assert d.stream_content_type == "text/event-stream"
    started = d.started({"X-Request-Id": "req_1"}, provider="openai", model="m")
    assert started == Started(provider="openai", model="m", request_id="req_1")


def test_build_call_posts_to_responses_with_a_bearer_key() -> None:
    """POST {base}/responses; the key is only in the Authorization header."""
    call = build(Request.of("hi"))
    assert call.method == "POST"
    assert call.url == "https://api.example.com/v1/responses"
    assert call.headers["Authorization"] == f"Bearer {KEY}"
    assert call.headers["Accept"] == "text/event-stream"
    assert KEY.encode() not in call.body
    assert KEY not in repr(call)
    with pytest.raises(TypeError):
        pickle.dumps(call)


def test_build_call_without_key() -> None:
    """No key, no Authorization header."""
    assert "Authorization" not in build(Request.of("hi"), api_key=None).headers


def test_build_call_minimal_body() -> None:
    """A plain request is model, input items and stream: true."""
    assert body(build(Request.of("hi"))) == {
        "model": "gpt-test",
        "input": [{"role": "user", "content": "hi"}],
        "stream": True,
    }


def test_build_call_system_messages_become_instructions() -> None:
    """System messages are joined into instructions and left out of input."""
    request = Request().with_messages(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "Use French."},
        ]
    )
    sent = body(build(request))
    assert sent["instructions"] == "Be brief.\n\nUse French."
    assert sent["input"] == [{"role": "user", "content": "hi"}]


def test_build_call_maps_tool_calls_and_results_to_items() -> None:
    """Assistant tool calls are function_call items and results function_call_output items."""
    request = Request().with_messages(
        [
            {"role": "user", "content": "Weather?"},
            Message(
                role="assistant",
                content="Checking.",
                tool_calls=(
                    ToolCallRef(id="call_1", name="weather", arguments={"city": "Paris"}),
                    ToolCallRef(id="call_2", name="now"),
                ),
            ),
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": None},
            {"role": "assistant", "content": "18C in Paris."},
        ]
    )
    assert body(build(request))["input"] == [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Checking."},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "weather",
            "arguments": '{"city":"Paris"}',
        },
        {"type": "function_call", "call_id": "call_2", "name": "now", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
        {"type": "function_call_output", "call_id": "call_2", "output": ""},
        {"role": "assistant", "content": "18C in Paris."},
    ]


def test_build_call_assistant_with_only_tool_calls_has_no_message_item() -> None:
    """An assistant turn with tool calls and no text sends only function_call items."""
    request = Request().with_messages(
        [
            {"role": "user", "content": "q"},
            Message(role="assistant", tool_calls=(ToolCallRef(id="c", name="f"),)),
        ]
    )
    assert [item.get("type", "message") for item in body(build(request))["input"]] == [
        "message",
        "function_call",
    ]


def test_build_call_maps_tools_flat() -> None:
    """Tools are flat function tools: type, name, description, parameters."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    request = Request.of(
        "hi", tools=[Tool(name="weather", description="Get it", parameters=schema)]
    )
    assert body(build(request))["tools"] == [
        {"type": "function", "name": "weather", "description": "Get it", "parameters": schema}
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        ("weather", {"type": "function", "name": "weather"}),
    ],
)
def test_build_call_maps_tool_choice(choice: str, expected: Any) -> None:
    """tool_choice passes auto/none/required through and names a function otherwise."""
    request = Request.of("hi", tools=[Tool(name="weather")], tool_choice=choice)
    assert body(build(request))["tool_choice"] == expected


def test_build_call_response_schema_is_text_format() -> None:
    """A response schema becomes text.format json_schema with its name."""
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    request = Request.of("hi", response_schema=schema, response_schema_name="count")
    assert body(build(request))["text"] == {
        "format": {"type": "json_schema", "name": "count", "schema": schema}
    }


def test_build_call_sampling_controls() -> None:
    """temperature is sent as is and max_tokens as max_output_tokens."""
    sent = body(build(Request.of("hi", temperature=0.3, max_tokens=64)))
    assert sent["temperature"] == 0.3
    assert sent["max_output_tokens"] == 64
    assert "max_tokens" not in sent


def test_build_call_rejects_stop_sequences() -> None:
    """The Responses API has no stop sequences: asking for them is a ConfigError."""
    with pytest.raises(ConfigError, match="stop"):
        build(Request.of("hi", stop="END"))


def test_build_call_merges_extra_last() -> None:
    """extra adds fields and overrides generated ones."""
    request = Request.of(
        "hi", max_tokens=5, extra={"max_output_tokens": 9, "reasoning": {"effort": "low"}}
    )
    sent = body(build(request))
    assert sent["max_output_tokens"] == 9
    assert sent["reasoning"] == {"effort": "low"}


# --- decoding -------------------------------------------------------------------------------


async def test_text_stream_full_lifecycle() -> None:
    """The documented lifecycle yields the text, stop, and the completed usage."""
    ev = Seq()
    response = await collect(
        [
            created(ev),
            message(ev, ["Hel", "lo", " wörld"]),
            completed(ev, usage(12, 30, reasoning=5, cached=4)),
        ]
    )
    assert response.text == "Hello wörld"
    assert response.finish_reason == "stop"
    assert response.native_finish_reason == "completed"
    assert response.usage == Usage(
        input_tokens=12, output_tokens=30, total_tokens=42, reasoning_tokens=5, cached_tokens=4
    )


def test_lifecycle_events_are_not_content() -> None:
    """created/in_progress/added/part events emit nothing; the first delta is the first event."""
    ev = Seq()
    evs, error = events([created(ev), message(ev, ["Hi"]), completed(ev)])
    assert error is None
    assert [type(e) for e in evs] == [Started, TextDelta, Usage, Finished]
    assert evs[1] == TextDelta(text="Hi")
    assert evs[1].raw["item_id"] == "msg_1"


async def test_reasoning_deltas() -> None:
    """Reasoning summary and reasoning text deltas are reasoning."""
    ev = Seq()
    response = await collect(
        [
            created(ev),
            ev(
                "response.output_item.added",
                output_index=0,
                item={"id": "rs_1", "type": "reasoning", "summary": []},
            ),
            ev(
                "response.reasoning_summary_text.delta",
                item_id="rs_1",
                output_index=0,
                summary_index=0,
                delta="Plan: ",
            ),
            ev(
                "response.reasoning_text.delta",
                item_id="rs_1",
                output_index=0,
                content_index=0,
                delta="add.",
            ),
            ev(
                "response.reasoning_summary_text.done",
                item_id="rs_1",
                output_index=0,
                summary_index=0,
                text="Plan: ",
            ),
            message(ev, ["4"], index=1),
            completed(ev),
        ]
    )
    assert response.reasoning == "Plan: add."
    assert response.text == "4"


async def test_refusal_delta_is_text() -> None:
    """A refusal delta is surfaced as text."""
    ev = Seq()
    response = await collect(
        [
            ev(
                "response.refusal.delta",
                item_id="msg_1",
                output_index=0,
                content_index=0,
                delta="No.",
            ),
            completed(ev),
        ]
    )
    assert response.text == "No."


def test_function_call_events() -> None:
    """A function call streams as ToolCallDeltas keyed by output_index, then one ToolCall
    whose id is the call_id, never the item id."""
    ev = Seq()
    evs, error = events(
        [
            call_added(ev, 0, call_id="call_A", name="weather", item_id="fc_A"),
            args_delta(ev, 0, '{"city":', item_id="fc_A"),
            args_delta(ev, 0, '"Paris"}', item_id="fc_A"),
            args_done(ev, 0, '{"city":"Paris"}', item_id="fc_A"),
            call_done(ev, 0, '{"city":"Paris"}', call_id="call_A", name="weather", item_id="fc_A"),
            completed(ev),
        ]
    )
    assert error is None
    assert evs[1:] == [
        ToolCallDelta(index=0, id="call_A", name="weather", arguments=""),
        ToolCallDelta(index=0, id="call_A", arguments='{"city":'),
        ToolCallDelta(index=0, id="call_A", arguments='"Paris"}'),
        ToolCall(index=0, id="call_A", name="weather", arguments={"city": "Paris"}),
        Usage(
            input_tokens=10, output_tokens=20, total_tokens=30, reasoning_tokens=0, cached_tokens=0
        ),
        Finished(reason="tool_calls", native_reason="completed"),
    ]


async def test_parallel_interleaved_function_calls() -> None:
    """Two calls whose argument deltas interleave are assembled by output_index."""
    ev = Seq()
    response = await collect(
        [
            created(ev),
            message(ev, ["Let me check."], index=0),
            call_added(ev, 1, call_id="call_1", name="weather", item_id="fc_1"),
            call_added(ev, 2, call_id="call_2", name="time", item_id="fc_2"),
            args_delta(ev, 2, '{"tz":', item_id="fc_2"),
            args_delta(ev, 1, '{"city":', item_id="fc_1"),
            args_delta(ev, 2, '"CET"}', item_id="fc_2"),
            args_delta(ev, 1, '"Rome"}', item_id="fc_1"),
            args_done(ev, 2, '{"tz":"CET"}', item_id="fc_2"),
            args_done(ev, 1, '{"city":"Rome"}', item_id="fc_1"),
            completed(ev),
        ]
    )
    assert response.text == "Let me check."
    assert sorted((c.index, c.id, c.name, c.arguments) for c in response.tool_calls) == [
        (1, "call_1", "weather", {"city": "Rome"}),
        (2, "call_2", "time", {"tz": "CET"}),
    ]
    assert response.finish_reason == "tool_calls"
    assert response.pending_tool_calls == ()


async def test_function_call_completed_by_output_item_done_only() -> None:
    """A call whose arguments arrive only on output_item.done is still a ToolCall."""
    ev = Seq()
    response = await collect(
        [
            call_done(ev, 0, '{"q": "x"}', call_id="call_9", name="search", item_id="fc_9"),
            completed(ev),
        ]
    )
    assert response.tool_calls == (
        ToolCall(index=0, id="call_9", name="search", arguments={"q": "x"}),
    )


async def test_function_call_without_arguments() -> None:
    """A call with empty arguments has arguments {}."""
    ev = Seq()
    response = await collect(
        [
            call_added(ev, 0, call_id="call_0", name="now", item_id="fc_0"),
            args_done(ev, 0, "", item_id="fc_0"),
            completed(ev),
        ]
    )
    assert response.tool_calls == (ToolCall(index=0, id="call_0", name="now", arguments={}),)


async def test_function_call_never_done_is_flushed_at_completed() -> None:
    """Arguments streamed without a .done event are parsed when the response completes."""
    ev = Seq()
    response = await collect(
        [
            call_added(ev, 0, call_id="call_1", name="f", item_id="fc_1"),
            args_delta(ev, 0, '{"a": 1}', item_id="fc_1"),
            completed(ev),
        ]
    )
    assert response.tool_calls == (ToolCall(index=0, id="call_1", name="f", arguments={"a": 1}),)


async def test_arguments_delta_located_by_item_id() -> None:
    """A delta without output_index is matched to its call through item_id."""
    ev = Seq()
    response = await collect(
        [
            call_added(ev, 3, call_id="call_3", name="f", item_id="fc_3"),
            ev("response.function_call_arguments.delta", item_id="fc_3", delta='{"k": true}'),
            completed(ev),
        ]
    )
    assert response.tool_calls == (ToolCall(index=3, id="call_3", name="f", arguments={"k": True}),)


async def test_function_call_event_without_index_or_known_item_is_malformed() -> None:
    """A delta that names no known call is MalformedFrame."""
    ev = Seq()
    error = await failure(
        [ev("response.function_call_arguments.delta", item_id="fc_x", delta="{}"), completed(ev)]
    )
    assert isinstance(error, MalformedFrame)


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("max_output_tokens", "length"),
        ("content_filter", "content_filter"),
        ("something_new", "length"),
    ],
)
async def test_incomplete(reason: str, finish: str) -> None:
    """response.incomplete ends the stream with the reason from incomplete_details."""
    ev = Seq()
    incomplete = ev(
        "response.incomplete",
        response={
            "id": "resp_1",
            "status": "incomplete",
            "incomplete_details": {"reason": reason},
            "usage": usage(3, 4),
        },
    )
    response = await collect([message(ev, ["cut"]), incomplete])
    assert response.text == "cut"
    assert response.finish_reason == finish
    assert response.native_finish_reason == reason
    assert response.usage is not None
    assert response.usage.total_tokens == 7


async def test_incomplete_mid_call_leaves_the_call_pending() -> None:
    """A call cut off by max_output_tokens is reported pending, not parsed."""
    ev = Seq()
    response = await collect(
        [
            call_added(ev, 0, call_id="call_1", name="f", item_id="fc_1"),
            args_delta(ev, 0, '{"a": [1, 2', item_id="fc_1"),
            ev(
                "response.incomplete",
                response={
                    "status": "incomplete",
                    "incomplete_details": {"reason": "max_output_tokens"},
                },
            ),
        ]
    )
    assert response.finish_reason == "length"
    assert response.tool_calls == ()
    (pending,) = response.pending_tool_calls
    assert (pending.id, pending.name, pending.arguments) == ("call_1", "f", '{"a": [1, 2')


async def test_unknown_events_are_ignored() -> None:
    """Events rxllm does not know (new tools, annotations...) change nothing."""
    ev = Seq()
    response = await collect(
        [
            created(ev),
            ev("response.web_search_call.searching", output_index=0, item_id="ws_1"),
            ev("response.brand_new_event", whatever={"x": 1}),
            message(ev, ["ok"], index=1),
            ev("response.output_text.annotation.added", annotation={"type": "url_citation"}),
            completed(ev),
        ]
    )
    assert response.text == "ok"
    assert response.finish_reason == "stop"


async def test_events_without_event_line_are_dispatched_by_type() -> None:
    """A proxy that drops the event: line still works: data.type decides."""
    ev = Seq()
    response = await collect(
        [
            ev("response.output_text.delta", named=False, output_index=0, delta="a"),
            ev("response.output_text.delta", named=False, output_index=0, delta="b"),
            ev("response.completed", named=False, response={"status": "completed"}),
        ]
    )
    assert response.text == "ab"
    assert response.finish_reason == "stop"


async def test_keep_alive_comments_and_done_marker() -> None:
    """Comment lines and a trailing [DONE] some proxies add are harmless."""
    ev = Seq()
    response = await collect(
        [b": ping\n\n", message(ev, ["x"]), b": ping\n\n", completed(ev), b"data: [DONE]\n\n"]
    )
    assert response.text == "x"


async def test_invalid_utf8_is_replaced() -> None:
    """Invalid UTF-8 inside a delta becomes U+FFFD."""
    ev = Seq()
    bad = (
        b"event: response.output_text.delta\n"
        b'data: {"type":"response.output_text.delta","output_index":0,"delta":"a\xffb"}\n\n'
    )
    response = await collect([bad, completed(ev)])
    assert response.text == "a\ufffdb"


async def test_no_terminal_event_is_incomplete() -> None:
    """A stream that closes before completed/incomplete/failed is IncompleteStream."""
    ev = Seq()
    error = await failure([created(ev), message(ev, ["Hel", "lo"])])
    assert isinstance(error, IncompleteStream)
    assert error.partial.text == "Hello"


# --- errors in the stream -------------------------------------------------------------------


async def test_error_event_before_content() -> None:
    """An error event before content raises the typed error (status 200)."""
    ev = Seq()
    error = await failure(
        [
            created(ev),
            ev("error", code="rate_limit_exceeded", message="Slow down.", param=None),
        ]
    )
    assert type(error) is RateLimited
    assert error.status == 200
    assert error.code == "rate_limit_exceeded"
    assert error.retryable is True
    assert error.provider == "openai-responses"
    assert str(error) == "Slow down."


async def test_recorded_error_then_failed_shape() -> None:
    """The recorded shape (error nested in "error", then response.failed) gives one error."""
    ev = Seq()
    error = await failure(
        [
            created(ev),
            ev(
                "error",
                error={"type": "server_error", "code": "server_error", "message": "Oops."},
            ),
            ev(
                "response.failed",
                response={"status": "failed", "error": {"code": "other", "message": "other"}},
            ),
        ]
    )
    assert type(error) is ServerError
    assert str(error) == "Oops."


async def test_error_event_after_content() -> None:
    """An error after text is StreamInterrupted with the exact partial and the cause."""
    ev = Seq()
    error = await failure(
        [message(ev, ["Hel", "lo"]), ev("error", code="server_error", message="Broke.")]
    )
    assert type(error) is StreamInterrupted
    assert error.partial.text == "Hello"
    assert isinstance(error.cause, ServerError)
    assert error.__cause__ is error.cause


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("server_error", ServerError),
        ("rate_limit_exceeded", RateLimited),
        ("insufficient_quota", QuotaExhausted),
        ("invalid_prompt", BadRequest),
        ("image_too_large", BadRequest),
        ("vector_store_timeout", ServerError),
        (None, ServerError),
    ],
)
async def test_response_failed(code: str | None, cls: type[ProviderError]) -> None:
    """response.failed raises the error its response.error code names."""
    ev = Seq()
    error = await failure(
        [
            created(ev),
            ev(
                "response.failed",
                response={"status": "failed", "error": {"code": code, "message": "no"}},
            ),
        ]
    )
    assert type(error) is cls
    assert error.status == 200


async def test_response_failed_without_error_object() -> None:
    """response.failed with error null is still a server error."""
    ev = Seq()
    error = await failure([ev("response.failed", response={"status": "failed", "error": None})])
    assert type(error) is ServerError


async def test_response_failed_after_content() -> None:
    """response.failed after text interrupts the stream with the partial."""
    ev = Seq()
    error = await failure(
        [
            message(ev, ["par", "tial"]),
            ev(
                "response.failed",
                response={"status": "failed", "error": {"code": "server_error", "message": "x"}},
            ),
        ]
    )
    assert isinstance(error, StreamInterrupted)
    assert error.partial.text == "partial"


@pytest.mark.parametrize(
    "frame",
    [
        b"event: response.output_text.delta\ndata: {not json\n\n",
        b"event: response.output_text.delta\ndata: [1, 2]\n\n",
        b'event: response.output_text.delta\ndata: {"type": "response.output_text.delta", '
        b'"output_index": 0, "delta": 5}\n\n',
        b'event: response.completed\ndata: {"type": "response.completed", "response": 5}\n\n',
        b'event: response.output_item.added\ndata: {"type": "response.output_item.added", '
        b'"output_index": 0, "item": {"type": "function_call", "arguments": 3}}\n\n',
    ],
)
async def test_malformed_frames(frame: bytes) -> None:
    """A frame that is not JSON or has the wrong shape is MalformedFrame."""
    error = await failure([frame])
    assert isinstance(error, MalformedFrame)


async def test_malformed_frame_after_content() -> None:
    """A malformed frame after text keeps the text in the partial."""
    ev = Seq()
    error = await failure([message(ev, ["ok"]) + b"event: x\ndata: {oops\n\n"])
    assert isinstance(error, StreamInterrupted)
    assert error.partial.text == "ok"
    assert isinstance(error.cause, MalformedFrame)


async def test_error_event_with_plain_text() -> None:
    """An error event whose data is not JSON is a server error with that text."""
    error = await failure([b"event: error\ndata: upstream timeout\n\n"])
    assert type(error) is ServerError
    assert str(error) == "upstream timeout"


async def test_bad_tool_arguments() -> None:
    """Arguments that do not parse as a JSON object fail with MalformedFrame."""
    ev = Seq()
    error = await failure(
        [
            call_added(ev, 0, call_id="c", name="f", item_id="fc"),
            args_done(ev, 0, "[1, 2]", item_id="fc"),
            completed(ev),
        ]
    )
    assert isinstance(error, StreamInterrupted)
    assert isinstance(error.cause, MalformedFrame)


async def test_oversized_tool_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argument fragments past the bound fail with FrameTooLarge."""
    monkeypatch.setattr("rxllm.providers._responses.MAX_ARGUMENTS_BYTES", 50)
    ev = Seq()
    error = await failure(
        [
            call_added(ev, 0, call_id="c", name="f", item_id="fc"),
            args_delta(ev, 0, '{"a": "' + "x" * 30, item_id="fc"),
            args_delta(ev, 0, "x" * 30, item_id="fc"),
        ]
    )
    assert isinstance(error, StreamInterrupted)
    assert isinstance(error.cause, FrameTooLarge)


async def test_oversized_event() -> None:
    """An event over max_event_bytes is FrameTooLarge."""
    ev = Seq()
    error = await failure(
        [ev("response.output_text.delta", output_index=0, delta="x" * 3000)], max_event_bytes=1000
    )
    assert isinstance(error, FrameTooLarge)


# --- non-streamed body ----------------------------------------------------------------------


async def test_non_streamed_response_object() -> None:
    """An application/json response object is translated whole."""
    obj = {
        "id": "resp_1",
        "object": "response",
        "status": "completed",
        "output": [
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [{"type": "summary_text", "text": "hm"}],
            },
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Hi", "annotations": []}],
            },
            {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "call_1",
                "name": "f",
                "arguments": '{"a": 1}',
            },
        ],
        "usage": usage(1, 2),
    }
    response = await collect([orjson.dumps(obj)], headers={"content-type": "application/json"})
    assert response.reasoning == "hm"
    assert response.text == "Hi"
    assert response.tool_calls == (ToolCall(index=2, id="call_1", name="f", arguments={"a": 1}),)
    assert response.finish_reason == "tool_calls"
    assert response.usage is not None
    assert response.usage.total_tokens == 3


async def test_non_streamed_incomplete_and_failed() -> None:
    """A JSON response that is incomplete gives length; one that failed raises its error."""
    incomplete = {
        "status": "incomplete",
        "incomplete_details": {"reason": "max_output_tokens"},
        "output": [],
    }
    response = await collect(
        [orjson.dumps(incomplete)], headers={"content-type": "application/json"}
    )
    assert response.finish_reason == "length"
    failed = {"status": "failed", "error": {"code": "server_error", "message": "x"}, "output": []}
    error = await failure([orjson.dumps(failed)], headers={"content-type": "application/json"})
    assert type(error) is ServerError


@pytest.mark.parametrize("raw", [b"not json", b"[1]", b'{"output": [5]}'])
async def test_non_streamed_malformed(raw: bytes) -> None:
    """A JSON body that is not a response object is MalformedFrame."""
    error = await failure([raw], headers={"content-type": "application/json"})
    assert isinstance(error, MalformedFrame)


# --- HTTP errors ----------------------------------------------------------------------------


def error_body(message: str, type_: str, code: str | None = None) -> bytes:
    """An OpenAI error body."""
    return orjson.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})


@pytest.mark.parametrize(
    ("status", "cls", "retryable"),
    [
        (400, BadRequest, False),
        (401, AuthenticationError, False),
        (404, BadRequest, False),
        (429, RateLimited, True),
        (500, ServerError, True),
        (503, ServerError, True),
    ],
)
async def test_http_errors(status: int, cls: type[ProviderError], retryable: bool) -> None:
    """HTTP errors map like OpenAI's, with this dialect's provider name."""
    error = await failure(
        [error_body("no", "invalid_request_error")],
        status=status,
        headers={"retry-after-ms": "250", "x-request-id": "req_r"},
    )
    assert type(error) is cls
    assert error.retryable is retryable
    assert error.retry_after == 0.25
    assert error.provider == "openai-responses"
    assert error.request_id == "req_r"


async def test_http_insufficient_quota() -> None:
    """A 429 insufficient_quota is QuotaExhausted, not retryable."""
    error = await failure(
        [
            error_body(
                "You exceeded your current quota.", "insufficient_quota", "insufficient_quota"
            )
        ],
        status=429,
    )
    assert type(error) is QuotaExhausted
    assert error.retryable is False


async def test_http_x_should_retry() -> None:
    """x-should-retry overrides the status's retry policy."""
    error = await failure(
        [error_body("x", "server_error")], status=500, headers={"x-should-retry": "false"}
    )
    assert error.retryable is False


# --- chunk boundaries -----------------------------------------------------------------------


def _stream(eol: bytes = b"\n") -> bytes:
    ev = Seq()
    raw = b"".join(
        [
            created(ev),
            b": keep-alive\n\n",
            ev(
                "response.reasoning_summary_text.delta",
                output_index=0,
                item_id="rs_1",
                summary_index=0,
                delta="Thïnk 😀",
            ),
            message(ev, ["Grüße, ", "wörld 😀"], index=1),
            call_added(ev, 2, call_id="call_a", name="weather", item_id="fc_a"),
            call_added(ev, 3, call_id="call_b", name="time", item_id="fc_b"),
            args_delta(ev, 2, '{"city": ', item_id="fc_a"),
            args_delta(ev, 3, '{"tz": "CET"}', item_id="fc_b"),
            args_delta(ev, 2, '"Zürich"}', item_id="fc_a"),
            args_done(ev, 2, '{"city": "Zürich"}', item_id="fc_a"),
            args_done(ev, 3, '{"tz": "CET"}', item_id="fc_b"),
            completed(ev, usage(9, 10, reasoning=2)),
        ]
    )
    return raw.replace(b"\n", eol)


STREAM = _stream()


def _expected(response: rxllm.Response) -> None:
    assert response.reasoning == "Thïnk 😀"
    assert response.text == "Grüße, wörld 😀"
    assert [(c.index, c.id, c.arguments) for c in response.tool_calls] == [
        (2, "call_a", {"city": "Zürich"}),
        (3, "call_b", {"tz": "CET"}),
    ]
    assert response.finish_reason == "tool_calls"
    assert response.usage is not None
    assert response.usage.reasoning_tokens == 2


async def test_every_chunk_boundary() -> None:
    """Splitting the stream in two at every byte offset decodes to the same Response."""
    whole = await collect([STREAM])
    _expected(whole)
    for cut in range(len(STREAM) + 1):
        assert await collect([STREAM[:cut], STREAM[cut:]]) == whole, cut


async def test_every_chunk_boundary_crlf() -> None:
    """The CRLF form split at every offset decodes the same."""
    crlf = _stream(b"\r\n")
    whole = await collect([crlf])
    _expected(whole)
    for cut in range(0, len(crlf) + 1, 3):
        assert await collect([crlf[:cut], crlf[cut:]]) == whole, cut


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
