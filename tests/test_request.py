"""Request, Message, Tool: coercion from OpenAI-shaped dicts and validation."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from rxllm.errors import ConfigError
from rxllm.request import Message, Request, Tool, ToolCallRef

# --- Message --------------------------------------------------------------------------------


def test_message_coerce_plain_dict() -> None:
    """An OpenAI-shaped dict becomes a Message with the same fields."""
    assert Message.coerce({"role": "user", "content": "hi", "name": "ann"}) == Message(
        role="user", content="hi", name="ann"
    )


def test_message_coerce_passes_messages_through() -> None:
    """A Message is returned as is."""
    m = Message(role="system", content="Be brief.")
    assert Message.coerce(m) is m


def test_message_role_defaults_to_user() -> None:
    """A dict without role is a user message."""
    assert Message.coerce({"content": "hi"}).role == "user"


def test_message_content_parts_keep_the_text() -> None:
    """OpenAI content parts are joined into text; non-text parts are dropped."""
    m = Message.coerce(
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look "},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                {"type": "text", "text": "here."},
            ],
        }
    )
    assert m.content == "Look here."


def test_message_coerce_assistant_tool_calls() -> None:
    """Assistant tool_calls in the OpenAI shape become ToolCallRefs with parsed arguments."""
    m = Message.coerce(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                },
                {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": ""}},
            ],
        }
    )
    assert m.content is None
    assert m.tool_calls == (
        ToolCallRef(id="call_1", name="weather", arguments={"city": "Paris"}),
        ToolCallRef(id="call_2", name="now", arguments={}),
    )


def test_tool_call_ref_accepts_object_arguments() -> None:
    """Arguments already an object (Ollama's shape) are accepted."""
    ref = ToolCallRef.from_openai({"function": {"name": "f", "arguments": {"a": [1, 2]}}})
    assert ref == ToolCallRef(id="", name="f", arguments={"a": [1, 2]})


def test_tool_call_ref_accepts_the_bare_shape() -> None:
    """A bare {"id", "name", "arguments"} mapping is accepted too."""
    ref = ToolCallRef.from_openai({"id": "c", "name": "f", "arguments": '{"x": 1}'})
    assert ref == ToolCallRef(id="c", name="f", arguments={"x": 1})


def test_message_coerce_tool_result() -> None:
    """A tool result keeps its tool_call_id."""
    m = Message.coerce({"role": "tool", "tool_call_id": "call_1", "content": "18C"})
    assert (m.role, m.tool_call_id, m.content) == ("tool", "call_1", "18C")


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ({"role": "tool", "content": "18C"}, "tool_call_id"),
        ({"role": "robot", "content": "x"}, "role"),
        ({"role": "developer", "content": "x"}, "role"),
        ("just text", "mapping"),
        (42, "mapping"),
        ({"role": "user", "content": 5}, "content"),
        ({"role": "user", "content": {"text": "x"}}, "content"),
    ],
)
def test_message_validation(value: Any, match: str) -> None:
    """Invalid messages raise ConfigError naming the problem."""
    with pytest.raises(ConfigError, match=match):
        Message.coerce(value)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        ({"id": "c", "function": {"arguments": "{}"}}, "name"),
        ({"id": "c", "function": {"name": "", "arguments": "{}"}}, "name"),
        ({"id": "c", "function": "weather"}, "name"),
        ({"id": "c", "function": {"name": "f", "arguments": "{oops"}}, "not JSON"),
        ({"id": "c", "function": {"name": "f", "arguments": "[1, 2]"}}, "object"),
        ({"id": "c", "function": {"name": "f", "arguments": 7}}, "object"),
    ],
)
def test_tool_call_validation(call: dict[str, Any], match: str) -> None:
    """A malformed assistant tool call raises ConfigError, never a raw parsing error."""
    with pytest.raises(ConfigError, match=match):
        Message.coerce({"role": "assistant", "tool_calls": [call]})


def test_message_is_frozen() -> None:
    """Messages are immutable."""
    m = Message(role="user", content="hi")
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.content = "changed"  # type: ignore[misc]


def test_config_error_is_a_value_error() -> None:
    """Validation errors are ValueErrors too."""
    with pytest.raises(ValueError, match="role"):
        Message(role="nobody", content="x")  # type: ignore[arg-type]


# --- Tool -----------------------------------------------------------------------------------

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def test_tool_coerce_openai_shape() -> None:
    """OpenAI's {"type": "function", "function": {...}} becomes a Tool."""
    tool = Tool.coerce(
        {
            "type": "function",
            "function": {"name": "weather", "description": "Get it", "parameters": SCHEMA},
        }
    )
    assert tool == Tool(name="weather", description="Get it", parameters=SCHEMA)


def test_tool_coerce_bare_shape_with_defaults() -> None:
    """A bare mapping with only a name gets an empty description and an empty object schema."""
    tool = Tool.coerce({"name": "now"})
    assert tool.description == ""
    assert tool.parameters == {"type": "object", "properties": {}}


def test_tool_coerce_passes_tools_through() -> None:
    """A Tool is returned as is."""
    tool = Tool(name="x")
    assert Tool.coerce(tool) is tool


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ({"description": "no name"}, "name"),
        ({"type": "function", "function": {"parameters": SCHEMA}}, "name"),
        ("weather", "name"),
        (None, "name"),
        ({"name": "f", "parameters": ["not", "a", "schema"]}, "parameters"),
    ],
)
def test_tool_validation(value: Any, match: str) -> None:
    """A tool without a name or with non-object parameters raises ConfigError."""
    with pytest.raises(ConfigError, match=match):
        Tool.coerce(value)


# --- Request --------------------------------------------------------------------------------

# Request's field types name the stored tuples; at run time it also coerces lists, generators
# and OpenAI-shaped dicts (JSON input), which is what these tests exercise.
LooseRequest: Any = Request


def test_request_of() -> None:
    """Request.of builds an optional system message and one user message."""
    request = Request.of("Name three rivers.", system="Be brief.", max_tokens=200)
    assert request.messages == (
        Message(role="system", content="Be brief."),
        Message(role="user", content="Name three rivers."),
    )
    assert request.max_tokens == 200
    assert Request.of("hi").messages == (Message(role="user", content="hi"),)


def test_request_coerces_dicts_into_tuples() -> None:
    """Lists of OpenAI-shaped dicts become tuples of Message and Tool."""
    request = LooseRequest(
        messages=[{"role": "user", "content": "hi"}],
        tools=[{"type": "function", "function": {"name": "f"}}],
    )
    assert request.messages == (Message(role="user", content="hi"),)
    assert request.tools == (Tool(name="f"),)


def test_request_accepts_any_iterable_and_single_mappings() -> None:
    """A generator of messages or a single message mapping is accepted."""
    gen = LooseRequest(messages=({"role": "user", "content": str(i)} for i in range(2)))
    assert [m.content for m in gen.messages] == ["0", "1"]
    single = LooseRequest(messages={"role": "user", "content": "one"}, tools={"name": "f"})
    assert single.messages == (Message(role="user", content="one"),)
    assert single.tools == (Tool(name="f"),)


def test_request_stop_string_becomes_a_tuple() -> None:
    """A single stop string is one stop sequence, not its characters."""
    assert Request.of("hi", stop="END").stop == ("END",)
    assert Request.of("hi", stop=["a", "b"]).stop == ("a", "b")


@pytest.mark.parametrize("max_tokens", [0, -5])
def test_request_max_tokens_must_be_positive(max_tokens: int) -> None:
    """max_tokens of zero or less raises ConfigError."""
    with pytest.raises(ConfigError, match="max_tokens"):
        Request.of("hi", max_tokens=max_tokens)


def test_request_rejects_bad_messages() -> None:
    """A message that fails validation fails the Request with ConfigError."""
    with pytest.raises(ConfigError):
        LooseRequest(messages=[{"role": "tool", "content": "orphan"}])
    with pytest.raises(ConfigError):
        LooseRequest(messages="not a list of messages")


def test_request_system_and_conversation() -> None:
    """system joins the system messages; conversation is every other message."""
    request = LooseRequest(
        messages=[
            {"role": "system", "content": "A."},
            {"role": "user", "content": "q"},
            {"role": "system", "content": "B."},
            {"role": "system", "content": ""},
        ]
    )
    assert request.system == "A.\n\nB."
    assert request.conversation == (Message(role="user", content="q"),)
    assert Request.of("q").system is None


def test_request_with_messages() -> None:
    """with_messages returns a copy with the messages replaced, the rest kept."""
    request = Request.of("q", temperature=0.5)
    other = request.with_messages([{"role": "user", "content": "r"}])
    assert other.messages == (Message(role="user", content="r"),)
    assert other.temperature == 0.5
    assert request.messages == (Message(role="user", content="q"),)


def test_request_defaults_and_immutability() -> None:
    """Defaults are empty and immutable; the request itself is frozen."""
    request = Request()
    assert request.messages == ()
    assert request.tools == ()
    assert request.stop == ()
    assert dict(request.extra) == {}
    assert dict(request.metadata) == {}
    assert request.response_schema_name == "response"
    with pytest.raises(TypeError):
        request.extra["x"] = 1  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.model = "other"  # type: ignore[misc]
