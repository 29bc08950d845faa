"""From a request body and a scenario to a provider-neutral answer plan.

``read_prompt`` pulls what the simulator needs out of each provider's request body (the
model, the last user message, the text to count prompt tokens from, the response schema);
``Plan`` holds the answer as lazy token streams, and ``Feed`` hands those tokens out in
event-sized chunks that never straddle a fault boundary.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from ._scenario import Scenario
from ._schema import DEFAULT_SCHEMA, json_document_pieces
from ._text import count_tokens, iter_text_tokens, iter_tokens, lorem_tokens, tokenize

__all__ = ["Feed", "Plan", "Prompt", "ToolCallPlan", "make_plan", "read_prompt", "stable_id"]


@dataclass(slots=True)
class Prompt:
    """What the simulator reads from a request body."""

    model: str
    last_user: str = ""
    texts: list[str] = field(default_factory=list)
    schema: Mapping[str, Any] | None = None
    include_usage: bool = False

    @property
    def prompt_tokens(self) -> int:
        """Tokens of every message text (at least 1)."""
        return max(1, sum(count_tokens(t) for t in self.texts))


def _text_of(content: Any) -> str:
    """The text of a message content: a string, or a list of parts with ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p["text"] for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str)
        )
    return ""


def _dig(body: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(body, Mapping):
            return None
        body = body.get(key)
    return body


def _schema(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def _messages(items: Any, key: str) -> list[tuple[str, str]]:
    """``(role, text)`` of each mapping in ``items`` (its text under ``key``)."""
    if not isinstance(items, list):
        return []
    return [
        (str(m.get("role", "user")), _text_of(m.get(key))) for m in items if isinstance(m, Mapping)
    ]


def read_prompt(dialect: str, body: Mapping[str, Any], model: str | None = None) -> Prompt:
    """Read ``body`` of ``dialect`` (``openai``, ``openai-responses``, ``anthropic``,
    ``gemini``, ``ollama``, ``ollama-generate``); ``model`` overrides the body's (Gemini
    names it in the path)."""
    name = model if model is not None else body.get("model")
    prompt = Prompt(model=name if isinstance(name, str) else "")
    messages: list[tuple[str, str]] = []  # (role, text)
    if dialect == "openai":
        messages.extend(_messages(body.get("messages"), "content"))
        prompt.schema = _schema(_dig(body, "response_format", "json_schema", "schema"))
        prompt.include_usage = bool(_dig(body, "stream_options", "include_usage"))
    elif dialect == "openai-responses":
        if isinstance(body.get("instructions"), str):
            messages.append(("system", body["instructions"]))
        inp = body.get("input")
        if isinstance(inp, str):
            messages.append(("user", inp))
        elif isinstance(inp, list):
            messages.extend(_messages(inp, "content"))
        prompt.schema = _schema(_dig(body, "text", "format", "schema"))
    elif dialect == "anthropic":
        system = body.get("system")
        if system:
            messages.append(("system", _text_of(system)))
        messages.extend(_messages(body.get("messages"), "content"))
        prompt.schema = _schema(_dig(body, "output_config", "format", "schema")) or _schema(
            _dig(body, "output_format", "schema")
        )
    elif dialect == "gemini":
        system = body.get("systemInstruction") or body.get("system_instruction")
        if isinstance(system, Mapping):
            messages.append(("system", _text_of(system.get("parts"))))
        messages.extend(_messages(body.get("contents"), "parts"))
        config = body.get("generationConfig") or body.get("generation_config") or {}
        prompt.schema = _schema(_dig(config, "responseJsonSchema")) or _schema(
            _dig(config, "responseSchema")
        )
    elif dialect in ("ollama", "ollama-generate"):
        if isinstance(body.get("system"), str):
            messages.append(("system", body["system"]))
        if isinstance(body.get("prompt"), str):
            messages.append(("user", body["prompt"]))
        messages.extend(_messages(body.get("messages"), "content"))
        prompt.schema = _schema(body.get("format"))
    prompt.texts = [text for _, text in messages if text]
    users = [text for role, text in messages if role == "user"]
    prompt.last_user = users[-1] if users else ""
    return prompt


def stable_id(*parts: object, length: int = 24) -> str:
    """A deterministic hex id from ``parts``."""
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()[:length]


@dataclass(slots=True)
class ToolCallPlan:
    """One tool call: its scripted id (or ""), a stable hex for generated ids, its name,
    arguments and the argument JSON's tokens."""

    index: int
    id: str
    hex: str
    name: str
    arguments: Mapping[str, Any]
    arguments_json: str
    tokens: list[str]


@dataclass(slots=True)
class Plan:
    """The answer, provider-neutral: lazy token streams plus the tool calls."""

    prompt_tokens: int
    reasoning: Iterator[str] | None
    text: Iterator[str] | None
    tool_calls: list[ToolCallPlan]
    signature: str
    finish: str


def make_plan(scenario: Scenario, prompt: Prompt, uid: str) -> Plan:
    """Plan the answer of ``scenario`` to ``prompt``; ``uid`` seeds the tool-call ids."""
    text: Iterator[str] | None
    if scenario.json_items is not None:
        schema = prompt.schema or scenario.json_schema or DEFAULT_SCHEMA
        pieces: Iterable[str] = json_document_pieces(
            schema, scenario.json_items, seed=scenario.seed, invalid_share=scenario.invalid_share
        )
        text = iter_text_tokens(pieces)
    elif scenario.text is not None:
        text = iter_tokens(scenario.text)
    elif scenario.echo:
        text = iter_tokens(prompt.last_user)
    elif scenario.tool_calls:
        text = None
    else:
        text = lorem_tokens(scenario.tokens, scenario.seed)
    calls = []
    for i, call in enumerate(scenario.tool_calls):
        args_json = orjson.dumps(call["arguments"]).decode()
        calls.append(
            ToolCallPlan(
                index=i,
                id=str(call.get("id") or ""),
                hex=stable_id(uid, "call", i),
                name=call["name"],
                arguments=call["arguments"],
                arguments_json=args_json,
                tokens=tokenize(args_json),
            )
        )
    reasoning = iter_tokens(scenario.reasoning) if scenario.reasoning else None
    return Plan(
        prompt_tokens=(
            scenario.prompt_tokens if scenario.prompt_tokens is not None else prompt.prompt_tokens
        ),
        reasoning=reasoning,
        text=text,
        tool_calls=calls,
        signature="sig_" + stable_id(uid, "signature", length=48),
        finish="tool_calls" if calls else scenario.finish_reason,
    )


class Feed:
    """Hands out tokens ``chunk_tokens`` at a time, cutting a chunk short so that the running
    count lands exactly on every fault boundary (``error_after_tokens``...)."""

    __slots__ = ("_bounds", "_chunk", "emitted")

    def __init__(self, chunk_tokens: int, boundaries: Iterable[int | None] = ()) -> None:
        self._chunk = chunk_tokens
        self._bounds = sorted({b for b in boundaries if b is not None and b > 0})
        self.emitted = 0

    def take(self, tokens: Iterator[str]) -> tuple[str, int]:
        """The next chunk of ``tokens`` and its token count (``("", 0)`` when exhausted)."""
        n = self._chunk
        bounds = self._bounds
        if bounds:
            while bounds and bounds[0] <= self.emitted:
                bounds.pop(0)
            if bounds:
                n = min(n, bounds[0] - self.emitted)
        if n == 1:
            token = next(tokens, None)
            if token is None:
                return "", 0
            self.emitted += 1
            return token, 1
        pieces = list(itertools.islice(tokens, n))
        self.emitted += len(pieces)
        return "".join(pieces), len(pieces)

    def count(self, n: int) -> None:
        """Count ``n`` tokens emitted whole (a Gemini or Ollama tool call)."""
        self.emitted += n
