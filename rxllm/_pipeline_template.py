"""Prompt templates: ``{field}`` filled from an input row, and nothing else.

``str.format`` would also evaluate ``{row.__class__}`` or ``{items[0]}`` (attribute and index
access on whatever the row holds) and format specs with nested fields. A template here only
looks names up: ``{name}`` is the row's ``name``, ``{{`` and ``}}`` are literal braces, and
anything else is an error when the spec is loaded, long before a row arrives.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["Template", "TemplateError"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


class TemplateError(ValueError):
    """The template text is not ``{field}`` lookups and literal text."""


class Template:
    """A template such as ``"Extract people from: {text}"``.

    Attributes:
        text: the template as written.
        fields: the field names it uses, in order of first use.
    """

    __slots__ = ("_parts", "fields", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        parts: list[tuple[str, str | None]] = []
        fields: list[str] = []
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:  # a single "{" or "}"
            raise TemplateError(f"{exc} (write {{{{ and }}}} for literal braces)") from None
        for literal, name, spec, conversion in parsed:
            if name is None:
                parts.append((literal, None))
                continue
            if not _NAME.match(name):
                raise TemplateError(
                    f"{{{name}}} is not a field name: a template only looks up fields "
                    "by name, like {text} (no positions, attributes or indexes)"
                )
            if spec or conversion:
                raise TemplateError(
                    f"{{{name}{'!' + conversion if conversion else ''}"
                    f"{':' + spec if spec else ''}}}: a template field takes no "
                    "conversion or format spec"
                )
            parts.append((literal, name))
            if name not in fields:
                fields.append(name)
        self._parts = tuple(parts)
        self.fields = tuple(fields)

    def render(self, row: Mapping[str, Any]) -> str:
        """The text with each field replaced by the row's value.

        Strings go in as they are, ``None`` as nothing, anything else as its JSON. A field
        the row lacks raises ``KeyError`` with its name.
        """
        out: list[str] = []
        for literal, name in self._parts:
            out.append(literal)
            if name is not None:
                value = row[name]
                if isinstance(value, str):
                    out.append(value)
                elif value is not None:
                    out.append(orjson.dumps(value, default=str).decode())
        return "".join(out)

    def __repr__(self) -> str:
        return f"Template({self.text!r})"
