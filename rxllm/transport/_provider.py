"""``rxllm.provider("openai/gpt-4o-mini")``: a dialect, an endpoint and a key, streaming."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from reactivex import Observable

from rxllm.errors import ConfigError
from rxllm.events import Event
from rxllm.providers import Dialect, get_dialect
from rxllm.providers._base import SECRET_HEADERS
from rxllm.request import Request
from rxllm.wire import DEFAULT_MAX_EVENT_BYTES

from ._stream import Timeouts, http_stream

__all__ = ["Provider", "provider"]


class Provider:
    """A model behind one endpoint, speaking one dialect.

    ``stream(request)`` returns a cold ``Observable[Event]``: every subscription makes one
    HTTP request, and disposing the subscription closes it. The API key is taken from the
    ``api_key`` argument or, at each request, from the dialect's environment variables
    (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ``GEMINI_API_KEY``/``GOOGLE_API_KEY``). It
    never appears in the repr, in errors or in logs, and an explicitly given key (and any
    authorization header in ``headers``) is dropped when the provider is pickled: the
    unpickled copy reads the environment instead.
    """

    __slots__ = (
        "_api_key",
        "_api_key_env",
        "base_url",
        "cost_per_token",
        "dialect",
        "headers",
        "max_event_bytes",
        "model",
        "name",
        "timeouts",
    )

    def __init__(
        self,
        dialect: str | Dialect,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_env: str | tuple[str, ...] | None = None,
        name: str | None = None,
        cost_per_token: float | None = None,
        timeouts: Timeouts | None = None,
        headers: Mapping[str, str] | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self.dialect = get_dialect(dialect)
        if not model:
            raise ConfigError("a provider needs a model name")
        self.model = model
        self.base_url = (base_url or self.dialect.default_base_url).rstrip("/")
        self._api_key = api_key
        if isinstance(api_key_env, str):
            api_key_env = (api_key_env,)
        self._api_key_env = tuple(api_key_env) if api_key_env else self.dialect.api_key_env
        self.name = name or f"{self.dialect.name}/{model}"
        self.cost_per_token = cost_per_token
        self.timeouts = timeouts or Timeouts()
        self.headers = dict(headers or {})
        self.max_event_bytes = max_event_bytes

    def _key(self) -> str | None:
        if self._api_key:
            return self._api_key
        for var in self._api_key_env:
            value = os.environ.get(var)
            if value:
                return value
        return None

    def stream(self, request: Request) -> Observable[Event]:
        """A cold Observable of the events answering ``request``: one request per subscription."""
        key = self._key()
        call = self.dialect.build_call(
            request, model=request.model or self.model, base_url=self.base_url, api_key=key
        )
        if self.headers:
            from rxllm.providers import HttpCall

            call = HttpCall(call.method, call.url, {**call.headers, **self.headers}, call.body)
        return http_stream(
            call,
            self.dialect,
            provider=self.name,
            model=request.model or self.model,
            timeouts=self.timeouts,
            max_event_bytes=self.max_event_bytes,
            secrets=(key,) if key else (),
        )

    def with_options(self, **changes: Any) -> Provider:
        """A copy with some constructor arguments changed (``base_url=...``, ``name=...``)."""
        args: dict[str, Any] = {
            "base_url": self.base_url,
            "api_key": self._api_key,
            "api_key_env": self._api_key_env,
            "name": self.name,
            "cost_per_token": self.cost_per_token,
            "timeouts": self.timeouts,
            "headers": self.headers,
            "max_event_bytes": self.max_event_bytes,
        }
        args.update(changes)
        dialect = args.pop("dialect", self.dialect)
        model = args.pop("model", self.model)
        return Provider(dialect, model, **args)

    def __repr__(self) -> str:
        return f"Provider({self.name!r}, base_url={self.base_url!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = {slot: getattr(self, slot) for slot in self.__slots__}
        state["_api_key"] = None  # secrets never travel in pickles
        state["headers"] = {
            k: v for k, v in self.headers.items() if k.lower() not in SECRET_HEADERS
        }
        state["dialect"] = self.dialect.name
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for slot, value in state.items():
            object.__setattr__(self, slot, value)
        self.dialect = get_dialect(state["dialect"])


def provider(
    spec: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    **options: Any,
) -> Provider:
    """Make a provider from ``"dialect/model"``: ``openai/…``, ``openai-responses/…``,
    ``anthropic/…``, ``gemini/…`` or ``ollama/…``.

    The model part may itself contain slashes (``openai/meta-llama/Llama-3-8B`` for a vLLM
    server). ``base_url`` defaults to the official endpoint (OpenAI's ends in ``/v1``; Ollama's
    is ``http://127.0.0.1:11434``); other keyword options go to ``Provider``.
    """
    dialect, sep, model = spec.partition("/")
    if not sep or not model:
        raise ConfigError(f"a provider spec looks like 'openai/gpt-4o-mini', not {spec!r}")
    return Provider(dialect, model, base_url=base_url, api_key=api_key, **options)
