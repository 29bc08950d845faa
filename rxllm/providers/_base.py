"""The dialect seam: what every provider dialect implements, and the helpers they share.

A dialect is sans-IO. It turns a ``Request`` into an ``HttpCall`` (``build_call``), makes a
``StreamDecoder`` for a response's bytes (``stream_decoder``), and maps an error response to
a typed ``ProviderError`` (``parse_error``). The transport and ``rxllm.replay`` drive it the
same way through ``ResponseReader``.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import orjson

from rxllm.errors import (
    AuthenticationError,
    BadRequest,
    FrameTooLarge,
    IncompleteStream,
    MalformedFrame,
    Overloaded,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    RequestTimeout,
    ServerError,
    StreamInterrupted,
    WireError,
    scrub,
)
from rxllm.events import Event, Started
from rxllm.request import Request
from rxllm.response import Accumulator
from rxllm.wire import DEFAULT_MAX_EVENT_BYTES, Decoder, JSONArrayDecoder, NDJSONDecoder, SSEEvent

__all__ = [
    "Dialect",
    "HttpCall",
    "JSONArrayStreamDecoder",
    "NDJSONStreamDecoder",
    "ResponseReader",
    "SSEStreamDecoder",
    "StreamDecoder",
    "error_class_for_status",
    "is_quota_text",
    "make_error",
    "merge_extra",
    "parse_retry_after",
]

SECRET_HEADERS = frozenset({"authorization", "x-api-key", "x-goog-api-key", "api-key"})


@dataclass(frozen=True, slots=True)
class HttpCall:
    """One HTTP request to make. ``headers`` may hold a key, so it is kept out of ``repr``."""

    method: str
    url: str
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError("an HttpCall may carry an API key and cannot be pickled")


@runtime_checkable
class StreamDecoder(Protocol):
    """Decodes one response body into events.

    ``feed`` returns the events each read completed. When the stream carries an error (an
    in-band error event, a malformed or oversized frame), ``feed`` returns the good events
    that came before it and sets ``error``; the caller stops there. ``done`` becomes true
    when the provider's terminator was seen (``[DONE]``, ``message_stop``, a finish reason
    or the closing ``]``...).
    """

    done: bool
    error: Exception | None

    def feed(self, data: bytes) -> list[Event]:
        """Decode one read of the body."""
        ...

    def finish(self) -> list[Event]:
        """End of body: flush whatever the framing allows."""
        ...


class Dialect(Protocol):
    """A provider's wire dialect (sans-IO)."""

    # Read-only members, so the class attributes of ``DialectBase`` subclasses satisfy them.
    @property
    def name(self) -> str:
        """The dialect's registry name (``"openai"``...)."""
        ...

    @property
    def default_base_url(self) -> str:
        """The provider's base URL when none is configured."""
        ...

    @property
    def api_key_env(self) -> tuple[str, ...]:
        """Environment variables that may hold the API key, in order (empty: no key)."""
        ...

    @property
    def request_id_header(self) -> str:
        """The response header carrying the provider's request id."""
        ...

    @property
    def stream_content_type(self) -> str:
        """The content type of a streamed response body."""
        ...

    def started(self, headers: Mapping[str, str], *, provider: str, model: str) -> Started:
        """The ``Started`` event for accepted response headers (request id included)."""
        ...

    def build_call(
        self, request: Request, *, model: str, base_url: str, api_key: str | None
    ) -> HttpCall:
        """Encode ``request`` as a streaming HTTP call."""
        ...

    def stream_decoder(
        self, *, content_type: str, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    ) -> StreamDecoder:
        """A decoder for a 2xx response body of ``content_type``."""
        ...

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """Map a non-2xx response to a typed error."""
        ...


# --- errors -------------------------------------------------------------------------------


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (ms) or ``retry-after`` (seconds or HTTP date).

    Returns ``None`` when neither header is present or parses; never a negative number.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    ms = lower.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = lower.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def error_class_for_status(status: int) -> type[ProviderError]:
    """The error class DESIGN.md's classification gives an HTTP status."""
    if status in (401, 403):
        return AuthenticationError
    if status == 408:
        return RequestTimeout
    if status == 429:
        return RateLimited
    if status == 529:
        return Overloaded
    if status >= 500:
        return ServerError
    if status == 409:  # conflict: transient per both SDKs
        return ServerError
    return BadRequest


QUOTA_MARKERS = (
    "insufficient_quota",
    "exceeded your current quota",
    "enforced_spend_limit_reached",
    "spend limit",
    "billing",
    "quota exceeded for",
    "credit balance is too low",
)


def is_quota_text(text: str) -> bool:
    """Whether an error's code or message says a quota or spend limit is used up (lowercase)."""
    return any(marker in text for marker in QUOTA_MARKERS)


def merge_extra(body: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """Merge a request's ``extra`` into ``body`` last.

    A mapping merges into a mapping one level deep (``{"generationConfig": {"topK": 5}}``
    keeps the temperature rxllm put there); anything else replaces the value.
    """
    for key, value in extra.items():
        current = body.get(key)
        if isinstance(value, Mapping) and isinstance(current, dict):
            body[key] = {**current, **value}
        else:
            body[key] = value


_OVERLOAD_MARKERS = ("overloaded", "unavailable")


def make_error(
    status: int,
    message: str,
    *,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
    provider: str | None = None,
    body_text: str = "",
    cls: type[ProviderError] | None = None,
) -> ProviderError:
    """Build the typed error for ``status`` and the provider's ``code`` and text.

    A 429 whose code or text names an exhausted quota or spend limit is ``QuotaExhausted``
    (not retryable); ``overloaded_error`` / ``UNAVAILABLE`` codes are ``Overloaded``. The
    ``x-should-retry`` header overrides ``retryable`` either way, as both SDKs do.
    """
    headers = headers or {}
    lower = {k.lower(): v for k, v in headers.items()}
    if cls is None:
        cls = error_class_for_status(status)
        hay = f"{code or ''} {message} {body_text}".lower()
        if status == 429 and is_quota_text(hay):
            cls = QuotaExhausted
        elif cls is ServerError and code and any(m in code.lower() for m in _OVERLOAD_MARKERS):
            cls = Overloaded
    retry_after = parse_retry_after(headers)
    retryable: bool | None = None
    should = lower.get("x-should-retry")
    if should == "true":
        retryable = True
    elif should == "false":
        retryable = False
    request_id = lower.get("x-request-id") or lower.get("request-id")
    reset_at = None
    if cls is QuotaExhausted and retry_after is not None:
        reset_at = time.time() + retry_after
    return cls(
        message or f"HTTP {status}",
        status=status,
        code=code,
        retryable=retryable,
        retry_after=retry_after,
        provider=provider,
        request_id=request_id,
        reset_at=reset_at,
    )


def load_json_body(body: bytes) -> Any:
    """Parse an error body; ``None`` when it is not JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def body_snippet(body: bytes) -> str:
    """The start of a non-JSON body, for an error message."""
    return body[:500].decode("utf-8", "replace").strip()


# --- decoders -----------------------------------------------------------------------------


class _DecoderBase:
    """Shared state of the framing-specific decoders."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = False
        self.error: Exception | None = None

    def _fail(self, exc: Exception) -> None:
        if self.error is None:
            self.error = exc


class SSEStreamDecoder(_DecoderBase):
    """Base of SSE dialect decoders.

    Subclasses implement ``on_event`` (an event with an ``event:`` type) and may override
    ``on_data`` (the undecoded data of a default-type event: the per-token fast path).
    """

    __slots__ = ("_sse",)

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        super().__init__()
        self._sse = Decoder(max_event_bytes=max_event_bytes)

    def on_event(self, event: SSEEvent, out: list[Event]) -> None:
        """Translate one SSE event, appending to ``out``; raise ``ProviderError`` for an
        in-band error or ``MalformedFrame`` for a payload that does not parse."""
        raise NotImplementedError

    def on_data(self, data: bytes, out: list[Event]) -> None:
        """Translate the UTF-8 data of one "message" event (default: via ``on_event``)."""
        self.on_event(
            SSEEvent("message", data.decode("utf-8", "replace"), self._sse.last_event_id), out
        )

    def feed(self, data: bytes) -> list[Event]:
        """Decode one read; see ``StreamDecoder``."""
        out: list[Event] = []
        if self.error is not None:
            return out
        try:
            items = self._sse.feed_raw(data)
        except WireError as exc:
            items = exc.events if isinstance(exc, FrameTooLarge | MalformedFrame) else []
            self._run(items, out)
            self._fail(exc)
            return out
        self._run(items, out)
        return out

    def _run(self, items: list[Any], out: list[Event]) -> bool:
        """Translate ``items``; return True once the stream has failed."""
        on_data = self.on_data
        try:
            for item in items:
                if item.__class__ is bytes:
                    on_data(item, out)
                else:
                    self.on_event(item, out)
        except (ProviderError, WireError) as exc:
            self._fail(exc)
            return True
        return False

    def finish(self) -> list[Event]:
        """End of body: an unterminated SSE event is dropped, per the standard."""
        self._sse.finish()
        return []


class NDJSONStreamDecoder(_DecoderBase):
    """Base of NDJSON dialect decoders: subclasses implement ``on_object``."""

    __slots__ = ("_nd",)

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        super().__init__()
        self._nd = NDJSONDecoder(max_line_bytes=max_event_bytes)

    def on_object(self, obj: Any, out: list[Event]) -> None:
        """Translate one JSON line, appending to ``out``."""
        raise NotImplementedError

    def feed(self, data: bytes) -> list[Event]:
        """Decode one read; see ``StreamDecoder``."""
        return self._guard(self._nd.feed, data)

    def finish(self) -> list[Event]:
        """End of body: a last line without newline is still parsed."""
        return self._guard(lambda _: self._nd.finish(), b"")

    def _guard(self, step: Callable[[bytes], list[Any]], data: bytes) -> list[Event]:
        out: list[Event] = []
        if self.error is not None:
            return out
        try:
            objs = step(data)
        except (FrameTooLarge, MalformedFrame) as exc:
            self._each(exc.events, out)
            self._fail(exc)
            return out
        self._each(objs, out)
        return out

    def _each(self, objs: list[Any], out: list[Event]) -> None:
        try:
            for obj in objs:
                if self.error is not None:
                    return
                self.on_object(obj, out)
        except (ProviderError, WireError) as exc:
            self._fail(exc)


class JSONArrayStreamDecoder(NDJSONStreamDecoder):
    """Base of decoders for a streamed JSON array: subclasses implement ``on_object``."""

    __slots__ = ("_arr",)

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        super().__init__(max_event_bytes=max_event_bytes)
        self._arr = JSONArrayDecoder(max_element_bytes=max_event_bytes)

    def feed(self, data: bytes) -> list[Event]:
        """Decode one read; see ``StreamDecoder``."""
        return self._guard(self._arr.feed, data)

    def finish(self) -> list[Event]:
        """End of body."""
        self._arr.finish()
        return []


# --- driving a response -------------------------------------------------------------------


class ResponseReader:
    """Runs one 2xx response body through a dialect's decoder, applying the first-token rule.

    ``feed`` and ``finish`` return the events to emit. When the stream failed they still
    return the good events that came before the failure and set ``error`` to what the
    consumer must see next: the provider or wire error itself before the first token,
    ``StreamInterrupted`` (with the exact partial ``Response`` and the cause) after it, and
    ``IncompleteStream`` when the body ended without the provider's terminator. ``fail``
    turns a transport error into the same outcome. The transport and ``rxllm.replay`` share
    this class, so a recorded stream takes exactly the live code path.
    """

    __slots__ = ("_acc", "_decoder", "_secrets", "error", "provider")

    def __init__(
        self,
        decoder: StreamDecoder,
        *,
        provider: str,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self._decoder = decoder
        self._acc = Accumulator()
        self._secrets = secrets
        self.provider = provider
        self.error: BaseException | None = None

    @property
    def content_seen(self) -> bool:
        """Whether a content-bearing event has been emitted (the first token)."""
        return self._acc.content_seen

    @property
    def done(self) -> bool:
        """Whether the provider's terminator was seen."""
        return self._decoder.done

    def started(self, event: Started) -> list[Event]:
        """Record and return the ``Started`` event."""
        self._acc.add(event)
        return [event]

    def feed(self, data: bytes) -> list[Event]:
        """Decode one read; on failure set ``error`` after the good events."""
        decoder = self._decoder
        events = decoder.feed(data)
        add = self._acc.add
        for ev in events:
            add(ev)
        if decoder.error is not None:
            self.error = self.fail(decoder.error)
        return events

    def finish(self) -> list[Event]:
        """End of body; set ``error`` to ``IncompleteStream`` if the terminator never came."""
        decoder = self._decoder
        events = decoder.finish()
        for ev in events:
            self._acc.add(ev)
        if decoder.error is not None:
            self.error = self.fail(decoder.error)
        elif not decoder.done:
            self.error = IncompleteStream(
                f"{self.provider} closed the stream without its terminator",
                partial=self._acc.response(),
            )
        return events

    def fail(self, error: BaseException) -> BaseException:
        """The error to deliver for ``error``: itself before content, else ``StreamInterrupted``."""
        if isinstance(error, ProviderError) and error.provider is None:
            error.provider = self.provider
        if self._secrets and isinstance(error, Exception):
            scrub(error, self._secrets)
        if not self._acc.content_seen or isinstance(error, StreamInterrupted):
            return error
        return StreamInterrupted(
            f"{self.provider} stream failed after the first token: {error}",
            partial=self._acc.response(),
            cause=error,
        )

    def partial(self) -> Any:
        """The ``Response`` folded so far."""
        return self._acc.response()


class DialectBase:
    """Defaults shared by the dialects; each sets the class attributes."""

    name: ClassVar[str]
    default_base_url: ClassVar[str]
    api_key_env: ClassVar[tuple[str, ...]] = ()
    request_id_header: ClassVar[str] = "x-request-id"
    stream_content_type: ClassVar[str] = "text/event-stream"

    def started(self, headers: Mapping[str, str], *, provider: str, model: str) -> Started:
        """The ``Started`` event for a response whose headers were accepted."""
        request_id = None
        wanted = self.request_id_header.lower()
        for key, value in headers.items():
            if key.lower() == wanted:
                request_id = value
                break
        return Started(provider=provider, model=model, request_id=request_id)

    def __repr__(self) -> str:
        return f"<dialect {self.name}>"
