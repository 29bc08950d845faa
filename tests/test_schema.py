"""Schema compilation, the versioned registry and the JSON form of events."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from rxllm.errors import MalformedFrame, SchemaError
from rxllm.events import (
    Finished,
    ReasoningDelta,
    Started,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from rxllm.schema import (
    EVENT_SCHEMA_ID,
    SchemaRegistry,
    compile_schema,
    event_from_json,
    event_to_json,
    json_pointer,
    load_schema,
)

_EVENTS = [
    Started(provider="openai", model="gpt", request_id="r1"),
    Started(provider="openai", model="gpt"),
    TextDelta(text="Hi", raw={"x": 1}),
    ReasoningDelta(text="hmm", signature="sig"),
    ToolCallDelta(index=0, id="c1", name="f", arguments='{"a"'),
    ToolCallDelta(index=1),
    ToolCall(index=0, id=None, name="f", arguments={"a": 1}),
    Usage(input_tokens=3, output_tokens=4, total_tokens=7, reasoning_tokens=1, cached_tokens=0),
    Usage(),
    Finished(reason="length", native_reason="max_tokens"),
]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Fail the test if anything tries to open a connection."""
    calls: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        calls.append(address)
        raise AssertionError(f"network access attempted: {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: refuse(None, a))  # type: ignore[arg-type]
    return calls


@pytest.mark.parametrize("event", _EVENTS, ids=lambda e: type(e).__name__)
def test_every_event_json_form_validates(event: Any) -> None:
    """Each event kind's JSON form validates against schemas/event.schema.json and round-trips."""
    compiled = compile_schema(load_schema("event"))
    data = event_to_json(event)
    assert compiled.errors(data) == []
    assert event_from_json(data) == event


def test_event_schema_rejects_bad_forms() -> None:
    """Unknown types and wrong fields are invalid, and event_from_json refuses them."""
    compiled = compile_schema(load_schema("event"))
    assert not compiled.is_valid({"type": "text_delta"})
    assert not compiled.is_valid({"type": "finished", "reason": "bored"})
    assert not compiled.is_valid({"type": "nope"})
    with pytest.raises(MalformedFrame):
        event_from_json({"type": "nope"})
    with pytest.raises(MalformedFrame):
        event_from_json({"type": "text_delta", "text": "a", "extra": 1})
    with pytest.raises(MalformedFrame):
        event_from_json({"type": "text_delta"})
    assert load_schema("event")["$id"] == EVENT_SCHEMA_ID


def test_remote_ref_fails_at_compile_time_without_network(no_network: list[Any]) -> None:
    """A remote $ref is a SchemaError at compile time and no socket is opened."""
    schema = {"type": "object", "properties": {"a": {"$ref": "https://example.com/a.json"}}}
    with pytest.raises(SchemaError, match="remote references are refused"):
        compile_schema(schema)
    with pytest.raises(SchemaError):
        compile_schema({"$ref": "#/$defs/missing"})
    assert no_network == []


def test_invalid_schema_is_schema_error() -> None:
    """A schema that is not a valid Draft 2020-12 schema raises SchemaError."""
    with pytest.raises(SchemaError):
        compile_schema({"type": "strnig"})


def test_compile_is_cached_by_content() -> None:
    """Equal schemas compile once."""
    assert compile_schema({"type": "integer"}) is compile_schema({"type": "integer"})


def test_local_refs_and_pointers() -> None:
    """Local $refs resolve and errors carry RFC 6901 pointers."""
    compiled = compile_schema(
        {
            "type": "object",
            "properties": {"a/b": {"type": "array", "items": {"$ref": "#/$defs/n"}}},
            "$defs": {"n": {"type": "integer"}},
        }
    )
    assert compiled.errors({"a/b": [1, "x"]}) == [("/a~1b/1", "'x' is not of type 'integer'")]
    assert json_pointer(["~", 0]) == "/~0/0"


def test_registry_versions_and_cross_refs(no_network: list[Any]) -> None:
    """The registry keeps versions by $id, newest first, and resolves $ref between schemas."""
    reg = SchemaRegistry()
    reg.register({"$id": "urn:t:name", "type": "string"})
    v1 = {"$id": "urn:t:p", "type": "object", "properties": {"n": {"$ref": "urn:t:name"}}}
    reg.register(v1, version="1")
    reg.register({**v1, "required": ["n"]}, version="2")
    reg.register({**v1, "required": ["n", "age"]}, version="10")
    assert reg.versions("urn:t:p") == ["1", "2", "10"]
    assert reg.get("urn:t:p").version == "10"
    assert [c.version for c in reg.accepting("urn:t:p", ["1", "2"])] == ["2", "1"]
    assert reg.get("urn:t:p", "1").errors({"n": 3}) == [("/n", "3 is not of type 'string'")]
    with pytest.raises(SchemaError):
        reg.get("urn:t:missing")
    with pytest.raises(SchemaError):
        reg.register({"type": "object"})
    assert no_network == []
