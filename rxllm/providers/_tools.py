"""Tool-call argument assembly shared by the dialects.

Arguments are untrusted model output: they go through the same bounded assembler as
structured output (``rxllm.wire.JsonStream``), so a depth bomb or a 5,000-digit number is a
typed error, never a crash.
"""

from __future__ import annotations

from typing import Any

from rxllm.errors import FrameTooLarge, ItemTooLarge, JsonAssemblyError, MalformedFrame
from rxllm.wire import JsonStream

__all__ = ["MAX_ARGUMENTS_BYTES", "parse_arguments"]

MAX_ARGUMENTS_BYTES = 1024 * 1024
"""Default bound on one tool call's argument JSON, in bytes."""


def parse_arguments(
    text: str, *, name: str | None = None, limit: int = MAX_ARGUMENTS_BYTES
) -> dict[str, Any]:
    """Parse a tool call's complete argument JSON into an object.

    ``""`` (a tool with no arguments streams only an empty fragment) is ``{}``. Text that is
    not a JSON object, or breaks a bound of ``JsonStream`` (depth 64, numbers of 100
    characters...), raises ``MalformedFrame`` (its ``__cause__`` is the
    ``JsonAssemblyError``); text over ``limit`` raises ``FrameTooLarge``.
    """
    if not text or text.isspace():
        return {}
    if len(text) > limit:
        raise FrameTooLarge(
            f"tool call {name!r} arguments are larger than {limit} bytes", limit=limit
        )
    stream = JsonStream("", strict=True, max_item_bytes=limit)
    out: list[Any] = []
    try:
        stream.feed(text, out)
        stream.finish(out)
    except ItemTooLarge:
        raise FrameTooLarge(
            f"tool call {name!r} arguments are larger than {limit} bytes", limit=limit
        ) from None
    except JsonAssemblyError as exc:
        raise MalformedFrame(
            f"tool call {name!r} arguments are not valid JSON: {exc}", frame=text
        ) from exc
    value = out[0] if len(out) == 1 else None
    if not isinstance(value, dict):
        raise MalformedFrame(f"tool call {name!r} arguments are not a JSON object", frame=text)
    return value
