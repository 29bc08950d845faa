"""What to ask a model: ``Request``, ``Message``, ``Tool``.

Messages follow the OpenAI chat shape (roles ``system``, ``user``, ``assistant``, ``tool``);
each dialect maps them to its provider's own shape (Anthropic's top-level ``system``,
Gemini's ``systemInstruction`` and ``model`` role, ...). Plain dicts in the OpenAI shape are
accepted wherever a ``Message`` or ``Tool`` is::

    Request(messages=[{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": "Name three rivers."}],
            max_tokens=200)
    Request.of("Name three rivers.", system="Be brief.")
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeAlias

import orjson

from .errors import ConfigError

__all__ = ["FrozenMap", "Message", "Request", "Role", "Tool", "ToolCallRef"]

Role: TypeAlias = Literal["system", "user", "assistant", "tool"]
_ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallRef:
    """A tool call the assistant made earlier in the conversation."""

    id: str
    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_openai(cls, data: Mapping[str, Any]) -> ToolCallRef:
        """Build from OpenAI's ``{"id", "type": "function", "function": {...}}`` shape.

        ``arguments`` may be a JSON string (OpenAI) or an object (Ollama); anything that is
        not a JSON object, or a call without a name, raises ``ConfigError``.
        """
        fn = data.get("function", data) if isinstance(data, Mapping) else None
        if not isinstance(fn, Mapping) or not fn.get("name"):
            raise ConfigError(f"a tool call needs a function name: {data!r:.200}")
        args = fn.get("arguments") or {}
        if isinstance(args, str | bytes):
            try:
                args = orjson.loads(args) if args.strip() else {}
            except orjson.JSONDecodeError as exc:
                raise ConfigError(
                    f"tool call {fn['name']!r} arguments are not JSON: {exc}"
                ) from None
        if not isinstance(args, Mapping):
            raise ConfigError(f"tool call {fn['name']!r} arguments are not a JSON object")
        return cls(id=str(data.get("id") or ""), name=str(fn["name"]), arguments=dict(args))


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """One chat message.

    ``content`` is text; an assistant message may carry ``tool_calls`` instead of or beside
    text; a ``tool`` message answers the call named by ``tool_call_id`` (and ``name``).
    """

    role: Role
    content: str | None = None
    tool_calls: tuple[ToolCallRef, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.role not in _ROLES:
            raise ConfigError(f"message role must be one of {_ROLES}, not {self.role!r}")
        if self.role == "tool" and not self.tool_call_id:
            raise ConfigError("a tool message needs tool_call_id")
        if self.content is not None and not isinstance(self.content, str):
            raise ConfigError(f"message content must be text, not {type(self.content).__name__}")

    @classmethod
    def coerce(cls, value: Message | Mapping[str, Any]) -> Message:
        """Accept a ``Message`` or a dict in the OpenAI chat shape."""
        if isinstance(value, Message):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"a message must be a Message or a mapping, not {type(value)}")
        content = value.get("content")
        if isinstance(content, list):  # OpenAI content parts: keep the text parts
            content = "".join(
                p.get("text", "") for p in content if isinstance(p, Mapping) and "text" in p
            )
        calls = tuple(ToolCallRef.from_openai(c) for c in value.get("tool_calls") or ())
        return cls(
            role=value.get("role", "user"),
            content=content,
            tool_calls=calls,
            tool_call_id=value.get("tool_call_id"),
            name=value.get("name"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Tool:
    """A function the model may call; ``parameters`` is its JSON Schema."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )

    @classmethod
    def coerce(cls, value: Tool | Mapping[str, Any]) -> Tool:
        """Accept a ``Tool``, OpenAI's ``{"type": "function", "function": {...}}`` or the bare
        ``{"name", "description", "parameters"}`` mapping."""
        if isinstance(value, Tool):
            return value
        fn = value.get("function", value) if isinstance(value, Mapping) else None
        if not isinstance(fn, Mapping) or not fn.get("name"):
            raise ConfigError(f"a tool needs a name: {value!r:.200}")
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(params, Mapping):
            raise ConfigError(f"tool {fn['name']!r} parameters must be a JSON Schema object")
        return cls(
            name=str(fn["name"]),
            description=fn.get("description") or "",
            parameters=params,
        )


@dataclass(frozen=True, slots=True, init=False)
class Request:
    """A provider-neutral chat request.

    Attributes:
        messages: the conversation (``Message`` or OpenAI-shaped dicts).
        tools: functions the model may call.
        tool_choice: ``"auto"``, ``"none"``, ``"required"`` or a tool name.
        response_schema: a JSON Schema the reply must follow, mapped to each provider's
            native structured-output option.
        response_schema_name: the name some providers require for that schema.
        temperature, max_tokens, stop: the usual sampling controls.
        model: overrides the provider's default model for this request.
        extra: provider-specific body fields, merged last into the request body
            (the escape hatch: ``{"top_k": 5}``, ``{"reasoning_effort": "low"}``...).
        metadata: free-form data for hooks and logs; never sent.
    """

    messages: tuple[Message, ...]
    tools: tuple[Tool, ...]
    tool_choice: str | None
    response_schema: Mapping[str, Any] | None
    response_schema_name: str
    temperature: float | None
    max_tokens: int | None
    stop: tuple[str, ...]
    model: str | None
    extra: Mapping[str, Any]
    metadata: Mapping[str, Any]

    def __init__(
        self,
        *,
        messages: Iterable[Message | Mapping[str, Any]] = (),
        tools: Iterable[Tool | Mapping[str, Any]] = (),
        tool_choice: str | None = None,
        response_schema: Mapping[str, Any] | None = None,
        response_schema_name: str = "response",
        temperature: float | None = None,
        max_tokens: int | None = None,
        stop: str | Iterable[str] = (),
        model: str | None = None,
        extra: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        # Accept any iterables and OpenAI-shaped dicts; store immutable tuples and mappings.
        if max_tokens is not None and max_tokens <= 0:
            raise ConfigError("max_tokens must be positive")
        set_ = object.__setattr__
        set_(self, "messages", tuple(Message.coerce(m) for m in _iter(messages)))
        set_(self, "tools", tuple(Tool.coerce(t) for t in _iter(tools)))
        set_(self, "tool_choice", tool_choice)
        set_(self, "response_schema", response_schema)
        set_(self, "response_schema_name", response_schema_name)
        set_(self, "temperature", temperature)
        set_(self, "max_tokens", max_tokens)
        set_(self, "stop", (stop,) if isinstance(stop, str) else tuple(stop))
        set_(self, "model", model)
        set_(self, "extra", FrozenMap(extra or {}))
        set_(self, "metadata", FrozenMap(metadata or {}))

    @classmethod
    def of(cls, prompt: str, *, system: str | None = None, **kwargs: Any) -> Request:
        """A one-turn request: an optional system message and one user message."""
        messages: list[Message] = []
        if system:
            messages.append(Message(role="system", content=system))
        messages.append(Message(role="user", content=prompt))
        return cls(messages=tuple(messages), **kwargs)

    def with_messages(self, messages: Iterable[Message | Mapping[str, Any]]) -> Request:
        """Return a copy with ``messages`` replaced."""
        return replace(self, messages=tuple(Message.coerce(m) for m in messages))

    @property
    def system(self) -> str | None:
        """The system messages joined by blank lines, or ``None``."""
        parts = [m.content for m in self.messages if m.role == "system" and m.content]
        return "\n\n".join(parts) if parts else None

    @property
    def conversation(self) -> tuple[Message, ...]:
        """Every message except the system ones."""
        return tuple(m for m in self.messages if m.role != "system")


class FrozenMap(dict[str, Any]):
    """A read-only copy of a mapping that still pickles (``MappingProxyType`` does not)."""

    __slots__ = ()

    def _readonly(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("this mapping is read-only")

    __setitem__ = __delitem__ = _readonly
    update = pop = popitem = clear = setdefault = _readonly
    __ior__ = _readonly

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (dict(self),))


def _iter(value: Any) -> Sequence[Any]:
    if value is None:
        return ()
    if isinstance(value, Mapping):
        return (value,)
    return tuple(value)
