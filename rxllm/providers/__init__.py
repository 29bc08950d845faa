"""Provider dialects: sans-IO translators between rxllm and each provider's wire format.

``get_dialect(name)`` returns the dialect for ``"openai"`` (Chat Completions and every
OpenAI-compatible server), ``"openai-responses"`` (Responses API), ``"anthropic"``
(Messages), ``"gemini"`` (``streamGenerateContent``, SSE or JSON array) or ``"ollama"``
(native ``/api/chat``, NDJSON).
"""

from __future__ import annotations

import importlib

from rxllm.errors import ConfigError

from ._base import (
    Dialect,
    HttpCall,
    ResponseReader,
    StreamDecoder,
    make_error,
    parse_retry_after,
)

__all__ = [
    "DIALECTS",
    "Dialect",
    "HttpCall",
    "ResponseReader",
    "StreamDecoder",
    "get_dialect",
    "make_error",
    "parse_retry_after",
]

DIALECTS: dict[str, tuple[str, str]] = {
    "openai": ("._openai", "OpenAIDialect"),
    "openai-responses": ("._responses", "ResponsesDialect"),
    "anthropic": ("._anthropic", "AnthropicDialect"),
    "gemini": ("._gemini", "GeminiDialect"),
    "ollama": ("._ollama", "OllamaDialect"),
}
"""Dialect name -> (module, class); modules are imported on first use."""

_cache: dict[str, Dialect] = {}


def get_dialect(name: str | Dialect) -> Dialect:
    """Return the dialect called ``name`` (a ``Dialect`` instance is returned as is)."""
    if not isinstance(name, str):
        return name
    dialect = _cache.get(name)
    if dialect is None:
        try:
            module_name, cls_name = DIALECTS[name]
        except KeyError:
            raise ConfigError(
                f"unknown dialect {name!r}; known: {', '.join(sorted(DIALECTS))}"
            ) from None
        module = importlib.import_module(module_name, __name__)
        dialect = _cache[name] = getattr(module, cls_name)()
    return dialect
