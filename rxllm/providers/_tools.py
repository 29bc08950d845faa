"""Tool-call argument assembly shared by the dialects."""

from __future__ import annotations

from typing import Any

import orjson

from rxllm.errors import FrameTooLarge, MalformedFrame

__all__ = ["MAX_ARGUMENTS_BYTES", "parse_arguments"]

MAX_ARGUMENTS_BYTES = 1024 * 1024
"""Default bound on one tool call's argument JSON, in bytes."""


def parse_arguments(
    text: str, *, name: str | None = None, limit: int = MAX_ARGUMENTS_BYTES
) -> dict[str, Any]:
    """Parse a tool call's complete argument JSON into an object.

    ``""`` (a tool with no arguments streams only an empty fragment) is ``{}``. Text that is
    not a JSON object raises ``MalformedFrame``; text over ``limit`` raises ``FrameTooLarge``.
    """
    if not text or text.isspace():
        return {}
    if len(text) > limit:
        raise FrameTooLarge(
            f"tool call {name!r} arguments are larger than {limit} bytes", limit=limit
        )
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise MalformedFrame(
            f"tool call {name!r} arguments are not valid JSON: {exc}", frame=text
        ) from None
    if not isinstance(value, dict):
        raise MalformedFrame(f"tool call {name!r} arguments are not a JSON object", frame=text)
    return value
