"""rxllm's error tree.

Every error rxllm raises derives from ``RxllmError``. Where a builtin means the same thing,
the class inherits it too (a timeout is also a ``TimeoutError``, a transport failure is
also a ``ConnectionError``, bad input is also a ``ValueError``), so ``except`` clauses
written for the standard library keep working. Context rides on attributes, never only in
the message. Every class has a short ``kind`` string (``"rate_limited"``...) that reports,
hooks and batch output use.

::

    RxllmError
    ├── ConfigError (ValueError)                   bad arguments, unknown provider or dialect
    ├── WireError (ValueError)                     the bytes are not the format they claim
    │   ├── FrameTooLarge                          a line / event / value over its bound
    │   └── MalformedFrame                         a payload that does not parse
    ├── ProviderError                              the provider said no (HTTP status or in-band)
    │   ├── BadRequest                             400, 404, 413, 422: fix the request
    │   ├── AuthenticationError                    401, 403
    │   ├── RateLimited                            429 (transient)
    │   │   └── QuotaExhausted                     429 that waiting cannot fix (quota, spend)
    │   ├── ServerError                            5xx, in-band server errors
    │   │   └── Overloaded                         529, overloaded_error, 503 UNAVAILABLE
    │   └── RequestTimeout                         408
    ├── TransportError (ConnectionError)           the connection failed
    │   ├── ConnectError                           could not connect
    │   └── ConnectionLost                         the connection broke mid-response
    ├── RxllmTimeout (TimeoutError)
    │   ├── ConnectTimeout
    │   ├── ReadTimeout                            no bytes within the idle read timeout
    │   ├── FirstTokenTimeout                      no content within the first-token timeout
    │   ├── IdleTimeout                            no event within the idle timeout
    │   └── TurnTimeout                            a roundtable panelist's turn ran too long
    ├── StreamInterrupted                          failed after the first token (``partial``)
    │   └── IncompleteStream                       closed without the provider's terminator
    ├── CircuitOpen                                the provider's breaker is open: no request made
    ├── ProviderExhausted                          the provider's quota is spent until ``reset_at``
    ├── AllProvidersFailed                         all failed before content (``attempts``)
    ├── JsonAssemblyError (ValueError)             untrusted JSON broke a bound or the grammar
    │   ├── DepthExceeded, NumberTooLong, StringTooLong, ItemTooLarge
    │   ├── InvalidJson
    │   └── IncompleteJson                         the stream ended inside a value
    ├── SchemaError (ValueError)                   a JSON Schema that cannot be compiled
    ├── ValidationHalted                           validate(on_invalid="halt") met a bad item
    ├── ReplayWindowExceeded                       resume asked for an id older than the window
    ├── SlowConsumer                               a subscriber's queue filled up: it was dropped
    ├── UnknownId (LookupError)                    a stream or event id the store never issued
    ├── StreamCancelled                            the hub's upstream was cancelled
    └── SpecError (ValueError)                     a pipeline spec is invalid (``path``, ``line``)

Messages are capped at 2 KB and never contain an API key: provider error text passes
through :func:`redact` before it is stored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from .response import Response

__all__ = [
    "AllProvidersFailed",
    "Attempt",
    "AuthenticationError",
    "BadRequest",
    "CircuitOpen",
    "ConfigError",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionLost",
    "DepthExceeded",
    "FirstTokenTimeout",
    "FrameTooLarge",
    "IdleTimeout",
    "IncompleteJson",
    "IncompleteStream",
    "InvalidJson",
    "ItemTooLarge",
    "JsonAssemblyError",
    "MalformedFrame",
    "NumberTooLong",
    "Overloaded",
    "ProviderError",
    "ProviderExhausted",
    "QuotaExhausted",
    "RateLimited",
    "ReadTimeout",
    "ReplayWindowExceeded",
    "RequestTimeout",
    "RxllmError",
    "RxllmTimeout",
    "SchemaError",
    "ServerError",
    "SlowConsumer",
    "SpecError",
    "StreamCancelled",
    "StreamInterrupted",
    "StringTooLong",
    "TransportError",
    "TurnTimeout",
    "UnknownId",
    "ValidationHalted",
    "WireError",
    "error_kind",
    "redact",
    "scrub",
]

MAX_MESSAGE = 2048
"""Error messages are cut to this many characters."""

MIN_SECRET = 8
"""Known secrets shorter than this are not replaced verbatim (no real API key is that short)."""

# Shapes of API keys in the wild: OpenAI (sk-, sk-proj-), Anthropic (sk-ant-), Google (AIza),
# bearer tokens echoed back in an error body. Known keys are redacted verbatim as well.
_KEY_PATTERNS = re.compile(
    r"(?:sk-[A-Za-z0-9_\-]{8,}|AIza[0-9A-Za-z_\-]{20,}|(?i:bearer)\s+[A-Za-z0-9._\-~+/=]{8,})"
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove API keys from ``text`` and cap it at 2 KB.

    Every non-empty string in ``secrets`` is replaced verbatim, and anything shaped like a
    provider key (``sk-...``, ``AIza...``, ``Bearer ...``) is masked as well.
    """
    for secret in secrets:
        # A real key is long; replacing a two-letter test key would mangle ordinary words.
        if secret and len(secret) >= MIN_SECRET:
            text = text.replace(secret, "***")
    text = _KEY_PATTERNS.sub("***", text)
    if len(text) > MAX_MESSAGE:
        text = text[: MAX_MESSAGE - 3] + "..."
    return text


def scrub(error: BaseException, secrets: Iterable[str]) -> None:
    """Redact ``secrets`` from an rxllm error's message in place (after it was built)."""
    message = getattr(error, "message", None)
    if isinstance(message, str):
        clean = redact(message, secrets)
        if clean != message:
            error.message = clean  # type: ignore[attr-defined]
            error.args = (clean,)


class RxllmError(Exception):
    """The root of every error rxllm raises."""

    kind: ClassVar[str] = "error"

    def __init__(self, message: str = "") -> None:
        message = redact(message)
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors must pickle (process pools, Ray) with their attributes but without re-running
        # __init__ signatures that differ per class.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[RxllmError], args: tuple[Any, ...], state: dict[str, Any]) -> RxllmError:
    obj = cls.__new__(cls)
    Exception.__init__(obj, *args)
    obj.__dict__.update(state)
    cause = state.get("cause")
    if isinstance(cause, BaseException):  # StreamInterrupted: __cause__ is not in __dict__
        obj.__cause__ = cause
    return obj


class ConfigError(RxllmError, ValueError):
    """rxllm was called with arguments it cannot use."""

    kind = "config"


# --- wire ---------------------------------------------------------------------------------


class WireError(RxllmError, ValueError):
    """The bytes on the wire are not the format they claim to be."""

    kind = "wire"


class FrameTooLarge(WireError):
    """A line, event or value is larger than its bound (``limit`` bytes)."""

    kind = "frame_too_large"

    def __init__(self, message: str, *, limit: int, events: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.limit = limit
        self.events = list(events)
        """Frames completed in the same read before the oversized one: nothing good is lost."""


class MalformedFrame(WireError):
    """A frame's payload does not parse (``frame`` holds up to 200 characters of it)."""

    kind = "malformed_frame"

    def __init__(self, message: str, *, frame: str = "", events: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.frame = redact(frame[:200])
        self.events = list(events)
        """Frames completed in the same read before the malformed one."""


# --- provider -----------------------------------------------------------------------------


class ProviderError(RxllmError):
    """The provider refused or failed the request.

    Attributes:
        status: the HTTP status (200 for an error that arrived inside a streaming response).
        code: the provider's own error type or code (``rate_limit_exceeded``,
            ``overloaded_error``, ``RESOURCE_EXHAUSTED``...), or ``None``.
        retryable: whether the same request may succeed if sent again.
        retry_after: seconds the provider asked to wait (``retry-after-ms``, ``retry-after``),
            or ``None``.
        provider: the provider's name (``"openai"``...), or ``None``.
        request_id: the provider's request id, when it sent one.
        reset_at: for quota errors, the UNIX time at which the quota resets, if known.
    """

    kind = "provider"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
        provider: str | None = None,
        request_id: str | None = None,
        reset_at: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retryable = self.default_retryable if retryable is None else retryable
        self.retry_after = retry_after
        self.provider = provider
        self.request_id = request_id
        self.reset_at = reset_at

    default_retryable: ClassVar[bool] = False

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status={self.status!r}, "
            f"code={self.code!r}, retryable={self.retryable!r}, retry_after={self.retry_after!r})"
        )


class BadRequest(ProviderError):
    """The request itself is wrong (400, 404, 413, 422): neither retry nor fall over."""

    kind = "bad_request"


class AuthenticationError(ProviderError):
    """The key is missing, invalid or lacks permission (401, 403): fall over, never retry."""

    kind = "authentication"


class RateLimited(ProviderError):
    """Too many requests (429); waiting ``retry_after`` seconds should help."""

    kind = "rate_limited"
    default_retryable = True


class QuotaExhausted(RateLimited):
    """A 429 that waiting cannot fix: quota used up, spend limit reached, billing needed."""

    kind = "quota_exhausted"
    default_retryable = False


class ServerError(ProviderError):
    """The provider failed (5xx, or an in-band server error)."""

    kind = "server_error"
    default_retryable = True


class Overloaded(ServerError):
    """The provider is overloaded (529, ``overloaded_error``, 503 ``UNAVAILABLE``)."""

    kind = "overloaded"


class RequestTimeout(ProviderError):
    """The provider timed the request out (408)."""

    kind = "request_timeout"
    default_retryable = True


# --- transport ----------------------------------------------------------------------------


class TransportError(RxllmError, ConnectionError):
    """The connection to the provider failed."""

    kind = "transport"
    retryable: bool = True
    retry_after: float | None = None


class ConnectError(TransportError):
    """No connection could be made (refused, DNS, TLS)."""

    kind = "connect"


class ConnectionLost(TransportError):
    """The connection broke while the response was being read."""

    kind = "connection_lost"


class RxllmTimeout(RxllmError, TimeoutError):
    """Something took longer than its configured bound (``timeout`` seconds)."""

    kind = "timeout"
    retryable: bool = True
    retry_after: float | None = None

    def __init__(self, message: str, *, timeout: float | None = None) -> None:
        super().__init__(message)
        self.timeout = timeout


class TurnTimeout(RxllmTimeout):
    """A panelist's turn took longer than ``turn_timeout`` seconds; its request was closed.

    Attributes:
        timeout: the bound, in seconds.
        panelist: whose turn it was (``None`` for the moderator).
        partial: the ``Response`` folded from what the turn said before the deadline.
    """

    kind = "turn_timeout"

    def __init__(
        self,
        message: str,
        *,
        timeout: float,
        panelist: str | None,
        partial: Response | None = None,
    ) -> None:
        super().__init__(message, timeout=timeout)
        self.panelist = panelist
        self.partial = partial


class ConnectTimeout(RxllmTimeout):
    """Connecting took longer than the connect timeout."""

    kind = "connect_timeout"


class ReadTimeout(RxllmTimeout):
    """No bytes arrived within the idle read timeout."""

    kind = "read_timeout"


class FirstTokenTimeout(RxllmTimeout):
    """No content arrived within the first-token timeout; fallback may follow."""

    kind = "first_token_timeout"


class IdleTimeout(RxllmTimeout):
    """No event arrived within the idle timeout after content had started."""

    kind = "idle_timeout"


# --- stream outcome -----------------------------------------------------------------------


class StreamInterrupted(RxllmError):
    """The stream failed after its first token; nothing is retried so nothing repeats.

    Attributes:
        partial: the ``Response`` folded from every event the consumer received.
        cause: the error that ended the stream (also set as ``__cause__``).
    """

    kind = "interrupted"

    def __init__(
        self, message: str, *, partial: Response, cause: BaseException | None = None
    ) -> None:
        super().__init__(message)
        self.partial = partial
        self.cause = cause
        self.__cause__ = cause


class IncompleteStream(StreamInterrupted):
    """The provider closed the stream cleanly but without its terminator (``[DONE]``...)."""

    kind = "incomplete"


# --- resilience ---------------------------------------------------------------------------


class CircuitOpen(RxllmError):
    """The provider's circuit breaker is open; no request was made."""

    kind = "circuit_open"
    retryable: bool = False
    retry_after: float | None = None

    def __init__(self, message: str, *, provider: str | None = None, until: float | None = None):
        super().__init__(message)
        self.provider = provider
        self.until = until


class ProviderExhausted(RxllmError):
    """The provider's quota or spend limit is used up until ``reset_at`` (UNIX time)."""

    kind = "exhausted"
    retryable: bool = False
    retry_after: float | None = None

    def __init__(
        self, message: str, *, provider: str | None = None, reset_at: float | None = None
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.reset_at = reset_at


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of one provider inside a chain."""

    provider: str
    kind: str
    status: int | None
    elapsed: float
    message: str = ""


class AllProvidersFailed(RxllmError):
    """Every provider of a chain failed before its first token.

    ``attempts`` lists each try in order (provider, error kind, status, elapsed seconds);
    ``errors`` holds the underlying exceptions.
    """

    kind = "all_failed"

    def __init__(
        self,
        message: str,
        *,
        attempts: Sequence[Attempt],
        errors: Sequence[BaseException] = (),
    ) -> None:
        super().__init__(message)
        self.attempts = tuple(attempts)
        self.errors = tuple(errors)


# --- structured output --------------------------------------------------------------------


class JsonAssemblyError(RxllmError, ValueError):
    """Untrusted JSON from the model broke a bound or the grammar.

    ``path`` is the ijson-style prefix where it happened (``"people.item.name"``) and
    ``offset`` the character offset in the text stream, when known.
    """

    kind = "json"

    def __init__(self, message: str, *, path: str | None = None, offset: int | None = None):
        super().__init__(message)
        self.path = path
        self.offset = offset


class DepthExceeded(JsonAssemblyError):
    """Containers nested deeper than ``max_depth``."""

    kind = "json_depth"


class NumberTooLong(JsonAssemblyError):
    """A number literal longer than ``max_number_length`` characters."""

    kind = "json_number"


class StringTooLong(JsonAssemblyError):
    """A string longer than ``max_string_length`` characters."""

    kind = "json_string"


class ItemTooLarge(JsonAssemblyError):
    """A value under the prefix larger than ``max_item_bytes``."""

    kind = "json_item_size"


class InvalidJson(JsonAssemblyError):
    """The text is not JSON where JSON was expected."""

    kind = "json_invalid"


class IncompleteJson(JsonAssemblyError):
    """The stream ended inside a JSON value; ``path`` names the last complete value."""

    kind = "json_incomplete"


class SchemaError(RxllmError, ValueError):
    """A JSON Schema could not be compiled (invalid, or a ``$ref`` that cannot be resolved)."""

    kind = "schema"


class ValidationHalted(RxllmError):
    """``validate(on_invalid="halt")`` met an invalid item.

    Attributes:
        item: the offending item (possibly incomplete, for an early rejection).
        index: its position among the items the validator saw, from 0.
        errors: ``(json_pointer, message)`` pairs.
    """

    kind = "validation_halted"

    def __init__(
        self, message: str, *, item: Any, index: int, errors: Sequence[tuple[str, str]]
    ) -> None:
        super().__init__(message)
        self.item = item
        self.index = index
        self.errors = tuple(errors)


# --- multi-stream -------------------------------------------------------------------------


class ReplayWindowExceeded(RxllmError):
    """A resume id is older than what the store still holds: the subscriber must reset."""

    kind = "replay_window_exceeded"

    def __init__(self, message: str, *, requested: str, oldest: str | None) -> None:
        super().__init__(message)
        self.requested = requested
        self.oldest = oldest


class SlowConsumer(RxllmError):
    """A subscriber's queue reached its limit and the subscriber was dropped."""

    kind = "slow_consumer"

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class UnknownId(RxllmError, LookupError):
    """A stream id, or an event id within a stream, that the store never issued.

    Not the same as a trimmed id (``ReplayWindowExceeded``). ``event_id`` is ``None`` when
    the stream itself is unknown: never started, or forgotten after its window aged out.
    """

    kind = "unknown_id"

    def __init__(self, message: str, *, stream_id: str, event_id: str | None = None) -> None:
        super().__init__(message)
        self.stream_id = stream_id
        self.event_id = event_id


class StreamCancelled(RxllmError):
    """The hub's upstream for ``stream_id`` was cancelled before it ended."""

    kind = "cancelled"

    def __init__(self, message: str, *, stream_id: str) -> None:
        super().__init__(message)
        self.stream_id = stream_id


class SpecError(RxllmError, ValueError):
    """A pipeline spec is invalid; ``path`` names the field and ``line`` its line (from 1)."""

    kind = "spec"

    def __init__(self, message: str, *, path: str = "", line: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.line = line


def error_kind(error: BaseException) -> str:
    """Return a short, stable name for ``error`` (``"rate_limited"``, ``"connect"``...)."""
    if isinstance(error, RxllmError):
        return error.kind
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, ConnectionError):
        return "transport"
    return type(error).__name__
