"""The normalized event stream every dialect decodes into.

A provider stream is an ``Observable[Event]`` where ``Event`` is a closed union of
frozen, slotted, keyword-only dataclasses. Consumers ``match`` on them::

    match event:
        case TextDelta(text=t):
            print(t, end="")
        case Finished(reason=r):
            print(f"\\n[{r}]")

``Started`` and ``Usage`` are lifecycle frames: they carry no content. ``TextDelta``,
``ReasoningDelta``, ``ToolCallDelta`` and ``ToolCall`` are content; the first of them is the
stream's *first token* (see ``is_content``). Each event may carry the provider's payload in
``raw``, which is excluded from equality and from ``repr``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias, TypeGuard

__all__ = [
    "CONTENT_TYPES",
    "Event",
    "FinishReason",
    "Finished",
    "ReasoningDelta",
    "Started",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "is_content",
]

FinishReason: TypeAlias = Literal["stop", "length", "tool_calls", "content_filter"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Started:
    """Response headers were accepted: the provider started a stream. Lifecycle, not content."""

    provider: str
    model: str
    request_id: str | None = None
    raw: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class TextDelta:
    """A fragment of the assistant's text."""

    text: str
    raw: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReasoningDelta:
    """A fragment of thinking / reasoning text, or the reasoning block's signature."""

    text: str
    signature: str | None = None
    raw: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallDelta:
    """A fragment of a tool call's argument JSON, keyed by the call's ``index``.

    ``id`` and ``name`` are set on the first fragment of a call and usually ``None`` after.
    """

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    raw: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCall:
    """A complete tool call with its arguments parsed into a JSON object."""

    index: int
    id: str | None
    name: str
    arguments: dict[str, Any]
    raw: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Token accounting for the whole request so far; the last ``Usage`` of a stream wins."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None
    raw: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Finished:
    """The provider ended the stream normally.

    ``reason`` is normalized to stop, length, tool_calls or content_filter; ``native_reason``
    is what the provider said (``end_turn``, ``MAX_TOKENS``, ...).
    """

    reason: FinishReason
    native_reason: str | None = None
    raw: Any = field(default=None, compare=False, repr=False)


Event: TypeAlias = (
    Started | TextDelta | ReasoningDelta | ToolCallDelta | ToolCall | Usage | Finished
)

CONTENT_TYPES: Final = (TextDelta, ReasoningDelta, ToolCallDelta, ToolCall)
"""The event types that count as content: the first of them is the first token."""


def is_content(event: object) -> TypeGuard[TextDelta | ReasoningDelta | ToolCallDelta | ToolCall]:
    """Tell whether ``event`` is content-bearing (the first one is the stream's first token).

    Anything that is not an rxllm lifecycle frame counts as content, so operators placed
    after a mapping step (plain strings, parsed items) still apply the first-token rule.
    """
    return not isinstance(event, _LIFECYCLE_TYPES)


_LIFECYCLE_TYPES: Final = (Started, Usage, Finished)


# --- fast constructors for the decoders' per-token path ---------------------------------
# A frozen dataclass's generated __init__ goes through object.__setattr__ once per field
# (about 450 ns for TextDelta); the dialects build millions of events, so they use these
# positional builders, which set the slots directly (about 200 ns) and give an identical
# object. They are private: user code should call the classes.


def _setter(cls: type, name: str) -> Callable[[Any, Any], None]:
    setter: Callable[[Any, Any], None] = cls.__dict__[name].__set__
    return setter


_new = object.__new__
_set_text = _setter(TextDelta, "text")
_set_text_raw = _setter(TextDelta, "raw")
_set_reason_text = _setter(ReasoningDelta, "text")
_set_reason_sig = _setter(ReasoningDelta, "signature")
_set_reason_raw = _setter(ReasoningDelta, "raw")


def _text_delta(text: str, raw: Any = None) -> TextDelta:
    ev = _new(TextDelta)
    _set_text(ev, text)
    _set_text_raw(ev, raw)
    return ev


def _reasoning_delta(text: str, raw: Any = None, signature: str | None = None) -> ReasoningDelta:
    ev = _new(ReasoningDelta)
    _set_reason_text(ev, text)
    _set_reason_sig(ev, signature)
    _set_reason_raw(ev, raw)
    return ev
