"""``Scenario``: what the simulator says, how fast, and which faults it injects.

A scenario is chosen per request: the model's entry in the app's scenarios (or the default),
with the fields of the request's ``x-rxllm-sim`` header (a JSON object) laid over it.
Scenario files are JSON (or YAML when PyYAML is importable) mapping model names to fields;
the key ``"*"`` names the default.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import orjson

from rxllm.errors import ConfigError

__all__ = ["DEFAULT_KEY", "FinishReason", "Scenario", "load_scenarios", "scenarios_from_mapping"]

DEFAULT_KEY = "*"
"""The key of a scenario mapping or file that names the default scenario."""

FinishReason = Literal["stop", "length", "content_filter"]

_FINISH = ("stop", "length", "content_filter")


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """One simulated answer and its faults. Every field is optional.

    Output (in stream order: reasoning, then the answer text, then tool calls; the answer
    text is ``json_items``, else ``text``, else ``echo``, else, unless there are tool calls,
    the default lorem answer):
        text: the scripted answer text.
        echo: answer with the request's last user message.
        reasoning: scripted thinking text, streamed before the answer (Anthropic and Gemini
            also get a signature).
        tool_calls: calls the model makes, each ``{"name": ..., "arguments": {...}}`` (an
            optional ``"id"`` too); stored as a tuple of read-only mappings.
        json_items: answer with a JSON document made from the request's response schema
            whose array holds this many items (see ``rxllm.sim.json_document``).
        invalid_share: the share (0..1) of those items made schema-invalid; which ones is
            ``rxllm.sim.is_invalid_item(index, share=..., seed=...)``.
        json_schema: the schema to use when the request carries none.
        seed: varies the default answer and the generated items.
        tokens: the length of the default answer (used when no output field is set).
        finish_reason: ``"stop"``, ``"length"`` or ``"content_filter"``, in each provider's
            own words (tool calls end with the provider's tool-call reason).
        prompt_tokens: the input token count to report (default: counted from the request).

    Tokens and pacing:
        chunk_tokens: tokens per content event.
        response_delay: seconds before the response headers.
        first_token_delay: seconds between the headers (and the lifecycle events that follow
            them) and the first content event.
        tokens_per_second: the content pace; ``None`` is as fast as the client reads.
        ping_every: Anthropic only: a ``ping`` event after every this many content events
            (0 for none; one ``ping`` always follows ``message_start``).

    Faults (all of them skipped once ``fail_times`` requests of the scenario key failed):
        status: an HTTP error status sent instead of the stream, with the provider's error
            body; ``retry_after`` (seconds) adds ``retry-after`` (and ``retry-after-ms`` on
            the OpenAI endpoints); ``error_code``/``error_message`` override the body's code
            (OpenAI ``code``, Anthropic ``error.type`` or ``error.details.error_code``,
            Gemini ``status``) and message. They apply to in-band errors too.
        fail_times: inject the faults only into the first N requests of the scenario key
            (``fail_key``, or the model name plus the ``x-rxllm-sim`` header), then succeed.
        error_after_tokens: an in-band error event in the provider's shape after N content
            tokens (or at the end of the content, if it is shorter).
        drop_after_bytes: close the connection abruptly after N body bytes.
        stall_after_tokens: after N content tokens, send nothing for ``stall_seconds`` with
            the connection open, then go on.
        malformed_at: the payload of event N (from 0, counting every event the stream
            writes) is cut in half, so it is not valid JSON.
        no_terminator: end the body cleanly right after the content, without the closing
            events (OpenAI finish chunk, usage and ``[DONE]``; Anthropic's last
            ``content_block_stop``, ``message_delta`` and ``message_stop``; Responses'
            ``.done`` events and ``response.completed``; Gemini's finish chunk and the
            closing ``]``; Ollama's ``done: true`` line).
    """

    text: str | None = None
    echo: bool = False
    reasoning: str | None = None
    tool_calls: Sequence[Mapping[str, Any]] = ()
    json_items: int | None = None
    invalid_share: float = 0.0
    json_schema: Mapping[str, Any] | None = None
    seed: int = 0
    tokens: int = 30
    finish_reason: FinishReason = "stop"
    prompt_tokens: int | None = None
    chunk_tokens: int = 1
    response_delay: float = 0.0
    first_token_delay: float = 0.0
    tokens_per_second: float | None = None
    ping_every: int = 16
    status: int | None = None
    retry_after: float | None = None
    error_code: str | None = None
    error_message: str | None = None
    fail_times: int | None = None
    fail_key: str | None = None
    error_after_tokens: int | None = None
    drop_after_bytes: int | None = None
    stall_after_tokens: int | None = None
    stall_seconds: float = 3600.0
    malformed_at: int | None = None
    no_terminator: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        calls = []
        raw_calls: Any = self.tool_calls
        if isinstance(raw_calls, Mapping):
            raw_calls = (raw_calls,)
        for call in raw_calls or ():
            if not isinstance(call, Mapping) or not isinstance(call.get("name"), str):
                raise ConfigError("each tool call needs a string 'name'")
            args = call.get("arguments", {})
            if isinstance(args, str | bytes):
                try:
                    args = orjson.loads(args) if args else {}
                except orjson.JSONDecodeError as exc:
                    raise ConfigError(f"tool call arguments are not JSON: {exc}") from None
            if not isinstance(args, Mapping):
                raise ConfigError("tool call 'arguments' must be a JSON object")
            entry: dict[str, Any] = {"name": call["name"], "arguments": dict(args)}
            if call.get("id") is not None:
                entry["id"] = str(call["id"])
            calls.append(MappingProxyType(entry))
        set_(self, "tool_calls", tuple(calls))
        for name, kinds in _TYPES.items():
            value = getattr(self, name)
            if value is None and name in _OPTIONAL:
                continue
            if isinstance(value, bool) != (kinds == (bool,)) or not isinstance(value, kinds):
                want = " or ".join(k.__name__ for k in kinds)
                raise ConfigError(f"scenario field {name} must be {want}, not {value!r}")
        if self.json_schema is not None and not isinstance(self.json_schema, Mapping):
            raise ConfigError("json_schema must be a JSON object")
        _check(self.finish_reason in _FINISH, f"finish_reason must be one of {_FINISH}")
        _check(0.0 <= self.invalid_share <= 1.0, "invalid_share must be between 0 and 1")
        _check(self.tokens >= 0, "tokens must be >= 0")
        _check(self.chunk_tokens >= 1, "chunk_tokens must be >= 1")
        _check(self.ping_every >= 0, "ping_every must be >= 0")
        for name in ("response_delay", "first_token_delay", "stall_seconds"):
            value = getattr(self, name)
            _check(math.isfinite(value) and value >= 0, f"{name} must be a finite number >= 0")
        if self.tokens_per_second is not None:
            _check(self.tokens_per_second > 0, "tokens_per_second must be > 0")
        if self.status is not None:
            _check(400 <= self.status <= 599, "status must be an HTTP error status (400-599)")
        if self.retry_after is not None:
            _check(self.retry_after >= 0, "retry_after must be >= 0")
        for name in _COUNTS:
            value = getattr(self, name)
            _check(value is None or value >= 0, f"{name} must be >= 0")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Scenario:
        """Build from a mapping of field names (a scenario file entry, the header's JSON)."""
        return cls().merged(data)

    def merged(self, overrides: Mapping[str, Any]) -> Scenario:
        """A copy with the fields in ``overrides`` replaced; unknown names are an error."""
        if not isinstance(overrides, Mapping):
            raise ConfigError("scenario fields must be a JSON object")
        unknown = sorted(set(overrides) - _FIELD_NAMES)
        if unknown:
            raise ConfigError(
                f"unknown scenario field(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(sorted(_FIELD_NAMES))}"
            )
        if not overrides:
            return self
        return dataclasses.replace(self, **overrides)

    def as_dict(self) -> dict[str, Any]:
        """The fields that differ from the defaults, JSON-ready (tool calls as dicts)."""
        out: dict[str, Any] = {}
        default = _DEFAULT
        for f in fields(self):
            if f.name.startswith("_"):
                continue
            value = getattr(self, f.name)
            if value != getattr(default, f.name):
                if f.name == "tool_calls":
                    value = [dict(c) for c in value]
                elif f.name == "json_schema":
                    value = dict(value)
                out[f.name] = value
        return out

    @property
    def has_faults(self) -> bool:
        """True when any fault field is set."""
        return (
            self.status is not None
            or self.error_after_tokens is not None
            or self.drop_after_bytes is not None
            or self.stall_after_tokens is not None
            or self.malformed_at is not None
            or self.no_terminator
        )

    def without_faults(self) -> Scenario:
        """A copy with every fault switched off (what ``fail_times`` leaves after N)."""
        return dataclasses.replace(
            self,
            status=None,
            error_after_tokens=None,
            drop_after_bytes=None,
            stall_after_tokens=None,
            malformed_at=None,
            no_terminator=False,
        )


_NUM = (int, float)
_TYPES: dict[str, tuple[type, ...]] = {
    "text": (str,),
    "echo": (bool,),
    "reasoning": (str,),
    "json_items": (int,),
    "invalid_share": _NUM,
    "seed": (int,),
    "tokens": (int,),
    "finish_reason": (str,),
    "prompt_tokens": (int,),
    "chunk_tokens": (int,),
    "response_delay": _NUM,
    "first_token_delay": _NUM,
    "tokens_per_second": _NUM,
    "ping_every": (int,),
    "status": (int,),
    "retry_after": _NUM,
    "error_code": (str,),
    "error_message": (str,),
    "fail_times": (int,),
    "fail_key": (str,),
    "error_after_tokens": (int,),
    "drop_after_bytes": (int,),
    "stall_after_tokens": (int,),
    "stall_seconds": _NUM,
    "malformed_at": (int,),
    "no_terminator": (bool,),
}
_OPTIONAL = frozenset(
    (
        "text",
        "reasoning",
        "json_items",
        "prompt_tokens",
        "tokens_per_second",
        "status",
        "retry_after",
        "error_code",
        "error_message",
        "fail_times",
        "fail_key",
        "error_after_tokens",
        "drop_after_bytes",
        "stall_after_tokens",
        "malformed_at",
    )
)
_COUNTS = (
    "json_items",
    "prompt_tokens",
    "fail_times",
    "error_after_tokens",
    "drop_after_bytes",
    "stall_after_tokens",
    "malformed_at",
)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


_FIELD_NAMES = frozenset(f.name for f in fields(Scenario) if not f.name.startswith("_"))
_DEFAULT = Scenario()


def scenarios_from_mapping(data: Mapping[str, Any]) -> dict[str, Scenario]:
    """Scenarios by model name from a mapping of model name to ``Scenario`` or field mapping
    (the key ``"*"`` is the default)."""
    if not isinstance(data, Mapping):
        raise ConfigError("scenarios must be a mapping of model name to scenario fields")
    out: dict[str, Scenario] = {}
    for model, value in data.items():
        if not isinstance(model, str):
            raise ConfigError(f"a scenario key must be a model name, not {model!r}")
        if isinstance(value, Scenario):
            out[model] = value
        elif isinstance(value, Mapping):
            try:
                out[model] = Scenario.from_mapping(value)
            except ConfigError as exc:
                raise ConfigError(f"scenario {model!r}: {exc}") from None
        else:
            raise ConfigError(f"scenario {model!r} must be a mapping of fields")
    return out


def load_scenarios(path: str | PathLike[str]) -> dict[str, Scenario]:
    """Read a scenario file: JSON, or YAML (``.yaml``/``.yml``) when PyYAML is importable.

    The file maps model names to scenario fields; the key ``"*"`` is the default::

        {"flaky": {"status": 503, "fail_times": 2, "retry_after": 0.1},
         "slow":  {"first_token_delay": 2.0, "tokens_per_second": 20},
         "*":     {"tokens": 40}}
    """
    p = Path(path)
    raw = p.read_bytes()
    if p.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml  # type: ignore[import-untyped, unused-ignore]
        except ImportError:
            raise ConfigError(
                f"{p}: reading YAML needs PyYAML (pip install pyyaml), or use JSON"
            ) from None
        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    else:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"{p}: not valid JSON: {exc}") from None
    if data is None:
        return {}
    try:
        return scenarios_from_mapping(data)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
