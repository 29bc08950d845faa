"""rxllm's error tree: builtin bases, redaction, pickling, kinds."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

import rxllm.errors as errors_module
from rxllm.errors import (
    MAX_MESSAGE,
    AllProvidersFailed,
    Attempt,
    AuthenticationError,
    BadRequest,
    CircuitOpen,
    ConfigError,
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    DepthExceeded,
    FirstTokenTimeout,
    FrameTooLarge,
    IdleTimeout,
    IncompleteJson,
    IncompleteStream,
    InvalidJson,
    ItemTooLarge,
    JsonAssemblyError,
    MalformedFrame,
    NumberTooLong,
    Overloaded,
    ProviderError,
    ProviderExhausted,
    QuotaExhausted,
    RateLimited,
    ReadTimeout,
    ReplayWindowExceeded,
    RequestTimeout,
    RxllmError,
    RxllmTimeout,
    SchemaError,
    ServerError,
    SlowConsumer,
    SpecError,
    StreamInterrupted,
    StringTooLong,
    TransportError,
    ValidationHalted,
    WireError,
    error_kind,
    redact,
)
from rxllm.events import TextDelta
from rxllm.response import Response

OPENAI_KEY = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx0123456789"
ANTHROPIC_KEY = "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWx"
GOOGLE_KEY = "AIzaSyA1234567890abcdefghijklmnopqrs"


def _error_classes() -> list[type[RxllmError]]:
    return [
        obj
        for name in errors_module.__all__
        if isinstance(obj := getattr(errors_module, name), type) and issubclass(obj, RxllmError)
    ]


# --- the tree -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "parent"),
    [
        (ConfigError, RxllmError),
        (WireError, RxllmError),
        (FrameTooLarge, WireError),
        (MalformedFrame, WireError),
        (ProviderError, RxllmError),
        (BadRequest, ProviderError),
        (AuthenticationError, ProviderError),
        (RateLimited, ProviderError),
        (QuotaExhausted, RateLimited),
        (ServerError, ProviderError),
        (Overloaded, ServerError),
        (RequestTimeout, ProviderError),
        (TransportError, RxllmError),
        (ConnectError, TransportError),
        (ConnectionLost, TransportError),
        (RxllmTimeout, RxllmError),
        (ConnectTimeout, RxllmTimeout),
        (ReadTimeout, RxllmTimeout),
        (FirstTokenTimeout, RxllmTimeout),
        (IdleTimeout, RxllmTimeout),
        (StreamInterrupted, RxllmError),
        (IncompleteStream, StreamInterrupted),
        (CircuitOpen, RxllmError),
        (ProviderExhausted, RxllmError),
        (AllProvidersFailed, RxllmError),
        (JsonAssemblyError, RxllmError),
        (DepthExceeded, JsonAssemblyError),
        (NumberTooLong, JsonAssemblyError),
        (StringTooLong, JsonAssemblyError),
        (ItemTooLarge, JsonAssemblyError),
        (InvalidJson, JsonAssemblyError),
        (IncompleteJson, JsonAssemblyError),
        (SchemaError, RxllmError),
        (ValidationHalted, RxllmError),
        (ReplayWindowExceeded, RxllmError),
        (SlowConsumer, RxllmError),
        (SpecError, RxllmError),
    ],
)
def test_tree(cls: type[RxllmError], parent: type[RxllmError]) -> None:
    """Each class sits where the module docstring draws it."""
    assert issubclass(cls, parent)


def test_every_exported_error_is_rooted() -> None:
    """Every exception class the module exports derives from RxllmError."""
    exported = [
        obj
        for name in errors_module.__all__
        if isinstance(obj := getattr(errors_module, name), type) and issubclass(obj, BaseException)
    ]
    assert len(exported) == len(_error_classes()) > 30


@pytest.mark.parametrize(
    "cls", [RxllmTimeout, ConnectTimeout, ReadTimeout, FirstTokenTimeout, IdleTimeout]
)
def test_timeouts_are_timeout_errors(cls: type[RxllmTimeout]) -> None:
    """Every rxllm timeout is a builtin TimeoutError, caught by stdlib-style handlers."""
    assert issubclass(cls, TimeoutError)
    with pytest.raises(TimeoutError):
        raise cls("slow", timeout=1.0)


@pytest.mark.parametrize("cls", [TransportError, ConnectError, ConnectionLost])
def test_transport_errors_are_connection_errors(cls: type[TransportError]) -> None:
    """Transport failures are builtin ConnectionErrors."""
    assert issubclass(cls, ConnectionError)


@pytest.mark.parametrize(
    "cls",
    [
        ConfigError,
        WireError,
        FrameTooLarge,
        MalformedFrame,
        JsonAssemblyError,
        DepthExceeded,
        InvalidJson,
        IncompleteJson,
        SchemaError,
        SpecError,
    ],
)
def test_bad_input_errors_are_value_errors(cls: type[RxllmError]) -> None:
    """Config, wire and JSON errors are builtin ValueErrors."""
    assert issubclass(cls, ValueError)


@pytest.mark.parametrize(
    "cls", [ProviderError, StreamInterrupted, CircuitOpen, AllProvidersFailed, SlowConsumer]
)
def test_outcome_errors_are_not_value_errors(cls: type[RxllmError]) -> None:
    """Provider and stream outcomes are not mistaken for bad input or timeouts."""
    assert not issubclass(cls, ValueError | TimeoutError | ConnectionError)


def test_kinds_are_unique() -> None:
    """Every class has its own kind string."""
    kinds = [cls.kind for cls in _error_classes()]
    assert len(kinds) == len(set(kinds))


@pytest.mark.parametrize(
    ("cls", "retryable"),
    [
        (ProviderError, False),
        (BadRequest, False),
        (AuthenticationError, False),
        (RateLimited, True),
        (QuotaExhausted, False),
        (ServerError, True),
        (Overloaded, True),
        (RequestTimeout, True),
    ],
)
def test_default_retryable(cls: type[ProviderError], retryable: bool) -> None:
    """Each provider error class has the retry default of its meaning, overridable."""
    assert cls("x").retryable is retryable
    assert cls("x", retryable=not retryable).retryable is (not retryable)


def test_provider_error_attributes_and_repr() -> None:
    """Context rides on attributes; repr names the class, status, code and retry hint."""
    error = RateLimited(
        "slow down",
        status=429,
        code="rate_limit_exceeded",
        retry_after=1.5,
        provider="openai",
        request_id="req_1",
        reset_at=10.0,
    )
    assert (error.status, error.code, error.retry_after) == (429, "rate_limit_exceeded", 1.5)
    assert (error.provider, error.request_id, error.reset_at) == ("openai", "req_1", 10.0)
    assert str(error) == "slow down"
    assert repr(error) == (
        "RateLimited('slow down', status=429, code='rate_limit_exceeded', "
        "retryable=True, retry_after=1.5)"
    )


def test_transport_and_timeout_errors_are_retryable() -> None:
    """Transport errors and timeouts say they may be retried."""
    assert ConnectError("refused").retryable is True
    assert ReadTimeout("idle", timeout=2.0).retryable is True
    assert CircuitOpen("open").retryable is False


# --- redaction ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", [OPENAI_KEY, ANTHROPIC_KEY, GOOGLE_KEY, "sk-abcdefgh"])
def test_redact_masks_key_shapes(key: str) -> None:
    """Anything shaped like a provider key is masked."""
    out = redact(f"Incorrect API key provided: {key}. See docs.")
    assert key not in out
    assert out.startswith("Incorrect API key provided: ***")
    assert out.endswith(". See docs.")


def test_redact_masks_bearer_tokens() -> None:
    """An echoed Authorization header value is masked."""
    assert redact("header was Bearer abc.def-ghi_jkl") == "header was ***"
    assert redact("bearer XYZ12345678") == "***"


def test_redact_masks_known_secrets_verbatim() -> None:
    """Secrets passed in are replaced wherever they occur, whatever their shape."""
    out = redact("token=plainsecret and again plainsecret", secrets=["plainsecret", ""])
    assert out == "token=*** and again ***"


def test_redact_leaves_ordinary_text() -> None:
    """Text without keys is unchanged (short sk- words are not keys)."""
    text = "The sk-ill of a task-based model: 42 tokens."
    assert redact(text) == text


def test_redact_caps_at_2kb() -> None:
    """Messages are cut to 2 KB, marked with an ellipsis."""
    out = redact("x" * 10_000)
    assert len(out) == MAX_MESSAGE == 2048
    assert out.endswith("...")
    assert redact("y" * MAX_MESSAGE) == "y" * MAX_MESSAGE


def test_redact_happens_before_the_cap() -> None:
    """A key straddling the cut is still masked, never left half visible."""
    text = "x" * (MAX_MESSAGE - 10) + OPENAI_KEY
    out = redact(text)
    assert "sk-" not in out
    assert len(out) <= MAX_MESSAGE


@pytest.mark.parametrize(
    "make",
    [
        lambda m: RxllmError(m),
        lambda m: ConfigError(m),
        lambda m: ServerError(m, status=500),
        lambda m: MalformedFrame(m, frame=m),
        lambda m: ReadTimeout(m, timeout=1.0),
        lambda m: StreamInterrupted(m, partial=Response()),
    ],
)
def test_errors_never_hold_a_key(make: Any) -> None:
    """A key in the message never reaches str, repr, args or pickles of any error."""
    error = make(f"failed with {OPENAI_KEY}")
    for text in (str(error), repr(error), str(error.args), pickle.dumps(error).decode("latin-1")):
        assert OPENAI_KEY not in text
    assert OPENAI_KEY not in getattr(error, "frame", "")


def test_long_messages_are_capped() -> None:
    """An error built from a huge provider body keeps at most 2 KB of it."""
    assert len(str(ServerError("e" * 100_000))) == MAX_MESSAGE


def test_malformed_frame_keeps_200_characters() -> None:
    """MalformedFrame keeps only the start of the bad frame, redacted."""
    error = MalformedFrame("bad", frame=OPENAI_KEY + "z" * 1000)
    assert len(error.frame) <= 200
    assert OPENAI_KEY not in error.frame


# --- pickling -------------------------------------------------------------------------------

PICKLABLE: list[RxllmError] = [
    RxllmError("root"),
    ConfigError("config"),
    FrameTooLarge("big", limit=10, events=[TextDelta(text="a")]),
    MalformedFrame("bad", frame="{x", events=[TextDelta(text="b")]),
    QuotaExhausted(
        "quota",
        status=429,
        code="insufficient_quota",
        retry_after=3.0,
        provider="openai",
        request_id="r",
        reset_at=99.0,
    ),
    Overloaded("busy", status=529, code="overloaded_error", retryable=False),
    ConnectError("refused"),
    FirstTokenTimeout("slow", timeout=2.5),
    CircuitOpen("open", provider="p", until=5.0),
    ProviderExhausted("spent", provider="p", reset_at=7.0),
    DepthExceeded("deep", path="a.item", offset=12),
    ValidationHalted("halt", item={"a": 1}, index=3, errors=[("/a", "wrong")]),
    ReplayWindowExceeded("gone", requested="5", oldest="9"),
    SlowConsumer("slow", limit=100),
    SpecError("spec", path="steps[0]", line=4),
]


@pytest.mark.parametrize("error", PICKLABLE, ids=lambda e: type(e).__name__)
def test_pickle_round_trip_keeps_attributes(error: RxllmError) -> None:
    """Errors pickle (process pools, Ray) and come back with class, message and attributes."""
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert back.args == error.args
    assert back.__dict__ == error.__dict__


def test_pickle_round_trip_stream_interrupted() -> None:
    """StreamInterrupted keeps its partial Response and its cause, also as __cause__."""
    cause = ServerError("boom", status=200, code="server_error")
    error = StreamInterrupted("cut", partial=Response(text="Hel", model="m"), cause=cause)
    back = pickle.loads(pickle.dumps(error))
    assert back.partial == Response(text="Hel", model="m")
    assert isinstance(back.cause, ServerError)
    assert (back.cause.status, back.cause.code) == (200, "server_error")
    assert back.__cause__ is back.cause


def test_pickle_round_trip_all_providers_failed() -> None:
    """AllProvidersFailed keeps its attempts and errors."""
    attempt = Attempt("openai", "rate_limited", 429, 0.5, "slow")
    error = AllProvidersFailed("all failed", attempts=[attempt], errors=[RateLimited("slow")])
    back = pickle.loads(pickle.dumps(error))
    assert back.attempts == (attempt,)
    assert type(back.errors[0]) is RateLimited
    assert str(back.errors[0]) == "slow"


# --- error_kind -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (RateLimited("x"), "rate_limited"),
        (QuotaExhausted("x"), "quota_exhausted"),
        (IncompleteStream("x", partial=Response()), "incomplete"),
        (ConnectError("x"), "connect"),
        (FirstTokenTimeout("x"), "first_token_timeout"),
        (TimeoutError(), "timeout"),
        (ConnectionResetError(), "transport"),
        (ConnectionRefusedError(), "transport"),
        (ValueError("x"), "ValueError"),
        (KeyError("x"), "KeyError"),
    ],
)
def test_error_kind(error: BaseException, kind: str) -> None:
    """error_kind gives rxllm's kind, or a builtin's family, or the class name."""
    assert error_kind(error) == kind
