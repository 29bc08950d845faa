"""A spec's text as plain data, with the line of every field (for errors that point at it).

JSON is parsed by the standard library (its errors carry the line) and then scanned once
more by a small tokenizer that records where each key and array element starts. YAML is
composed into PyYAML's node tree, whose marks give the lines, and built into data from the
nodes, so the two always agree. Both formats reject duplicate keys: a spec that says a thing
twice is ambiguous.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from rxllm.errors import SpecError

__all__ = ["FieldPath", "Located", "format_path", "parse_text"]

FieldPath: TypeAlias = tuple[str | int, ...]
"""Where a value sits in the spec: keys and list indexes from the root."""

Format: TypeAlias = Literal["json", "yaml"]

_MAX_DEPTH = 200
"""The deepest nesting a spec may have (a recursive YAML alias is cut here)."""


def format_path(path: FieldPath) -> str:
    """``("steps", 2, "validate")`` -> ``"steps[2].validate"``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True, slots=True)
class Located:
    """Parsed spec data and the line (from 1) where each field or list element starts."""

    data: Any
    lines: Mapping[FieldPath, int] = field(repr=False)
    source: str = "<spec>"

    def line(self, path: FieldPath) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return None

    def error(self, path: FieldPath, message: str) -> SpecError:
        """A ``SpecError`` for ``path``: ``source:line: path: message``."""
        line = self.line(path)
        where = f"{self.source}:{line}" if line is not None else self.source
        shown = format_path(path)
        return SpecError(
            f"{where}: {shown}: {message}" if shown else f"{where}: {message}",
            path=shown,
            line=line,
        )


def parse_text(text: str, *, format: Format, source: str = "<spec>") -> Located:
    """Parse a spec's ``text`` as ``format``; syntax errors are ``SpecError`` with the line."""
    if format == "json":
        return _parse_json(text, source)
    return _parse_yaml(text, source)


# --- JSON -----------------------------------------------------------------------------------

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]|[^\s{}\[\]:,"]+|\s+', re.DOTALL)


def _parse_json(text: str, source: str) -> Located:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError(
            f"{source}:{exc.lineno}: not valid JSON: {exc.msg} (column {exc.colno})",
            line=exc.lineno,
        ) from None
    except RecursionError:
        raise SpecError(f"{source}: JSON nested too deeply") from None
    return Located(data, _json_lines(text, source), source)


class _Frame:
    __slots__ = ("index", "is_object", "key", "keys", "path")

    def __init__(self, path: FieldPath, is_object: bool) -> None:
        self.path = path
        self.is_object = is_object
        self.key: str | None = None  # an object's current key; None while one is expected
        self.keys: set[str] = set()
        self.index = 0


def _json_lines(text: str, source: str) -> dict[FieldPath, int]:
    """The line of every key and array element of a document ``json.loads`` accepted."""
    lines: dict[FieldPath, int] = {}
    stack: list[_Frame] = []
    line = 1
    for match in _TOKEN.finditer(text):
        token = match.group()
        first = token[0]
        if first.isspace():
            line += token.count("\n")
            continue
        top = stack[-1] if stack else None
        if first == '"' and top is not None and top.is_object and top.key is None:
            key = json.loads(token)
            if key in top.keys:
                where = format_path((*top.path, key))
                raise SpecError(
                    f"{source}:{line}: {where}: duplicate key {key!r}", path=where, line=line
                )
            top.keys.add(key)
            top.key = key
            lines[(*top.path, key)] = line
            continue
        if first == ":":
            continue
        if first == ",":
            if top is not None:
                if top.is_object:
                    top.key = None
                else:
                    top.index += 1
            continue
        if first in "}]":
            stack.pop()
            continue
        # The start of a value.
        if top is None:
            path: FieldPath = ()
            lines.setdefault((), line)
        elif top.is_object:
            assert top.key is not None
            path = (*top.path, top.key)
        else:
            path = (*top.path, top.index)
            lines[path] = line
        if first in "{[":
            stack.append(_Frame(path, first == "{"))
    return lines


# --- YAML -----------------------------------------------------------------------------------


def _parse_yaml(text: str, source: str) -> Located:
    try:
        import yaml  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        raise SpecError(
            f"{source}: reading a YAML spec needs PyYAML (pip install pyyaml); "
            "or write the spec as JSON"
        ) from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[FieldPath, int] = {}
        data = None if node is None else _build(yaml, loader, node, (), lines, source, 0)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "syntax error"
        where = f"{source}:{line}" if line is not None else source
        raise SpecError(f"{where}: not valid YAML: {problem}", line=line) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    if node is not None:
        lines.setdefault((), node.start_mark.line + 1)
    return Located(data, lines, source)


def _build(
    yaml: Any,
    loader: Any,
    node: Any,
    path: FieldPath,
    lines: dict[FieldPath, int],
    source: str,
    depth: int,
) -> Any:
    line = node.start_mark.line + 1
    if depth > _MAX_DEPTH:
        raise SpecError(f"{source}:{line}: the spec is nested too deeply", line=line)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves "<<" merge keys
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                where = format_path(path) or "the spec"
                raise SpecError(
                    f"{source}:{key_line}: {where}: keys must be strings, not {key!r} (quote it)",
                    path=format_path(path),
                    line=key_line,
                )
            child = (*path, key)
            if key in out:
                where = format_path(child)
                raise SpecError(
                    f"{source}:{key_line}: {where}: duplicate key {key!r}",
                    path=where,
                    line=key_line,
                )
            lines[child] = key_line
            out[key] = _build(yaml, loader, value_node, child, lines, source, depth + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item_node in enumerate(node.value):
            child = (*path, index)
            lines[child] = item_node.start_mark.line + 1
            items.append(_build(yaml, loader, item_node, child, lines, source, depth + 1))
        return items
    return loader.construct_object(node, deep=True)
