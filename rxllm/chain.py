"""``Chain``: several providers behind one stream, with retries, breakers and hooks.

A chain tries its providers in order (or cheapest first) and applies DESIGN.md's
first-token rule to each attempt::

    attempt A ──(fails before content)──> retry A (backoff) ──> ... ──> fall over to B
    attempt A ──(first token)──> stream A to the end; a later failure ends the stream with
                                 StreamInterrupted(partial=<exactly what was emitted>)

* **Before the first token** nothing reaches the consumer: lifecycle frames (``Started``,
  ``Usage``) are held back until content arrives, so a failed attempt leaves no trace.
  Retryable errors (408, 409, 429, 5xx, 529, in-band, connect errors, timeouts) are retried
  on the same provider with exponential backoff; when the provider asked for a wait
  (``retry_after``) or missed the first-token timeout and another provider can take the
  request, the chain falls over at once instead of sleeping. 401/403 and exhausted quotas
  fall over without retry. 400/404/422 (``BadRequest``) and errors outside the
  classification are raised as they are.
* **After the first token** nothing is retried or replayed.
* Every provider has ONE ``CircuitBreaker`` (keyed by its name) shared by every chain and
  request in the process, and may be marked *exhausted* (quota or spend limit) until its
  ``reset_at``. Skipped providers appear in ``AllProvidersFailed.attempts`` as
  ``circuit_open`` / ``exhausted``.
* ``Hooks`` fire for streams as for one-shot calls: a start per attempt, an end at stream
  close (outcome, time to first token, duration, usage), fallbacks, retries, breaker
  changes. A hook that raises is logged on the ``rxllm`` logger and never breaks a stream.

Example::

    chain = Chain(
        [rxllm.provider("openai/gpt-4o-mini"), rxllm.provider("anthropic/claude-haiku-4-5")],
        retry=RetryPolicy(attempts=3),
        first_token_timeout=10.0,
        hooks=Hooks(on_fallback=lambda info: log.warning("fallback %s", info)),
    )
    response = await rxllm.collect(chain.stream(Request.of("Hello")))
"""

from __future__ import annotations

import logging
import random as _random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxllm.aio import scheduler_for
from rxllm.errors import (
    AllProvidersFailed,
    Attempt,
    CircuitOpen,
    ConfigError,
    FirstTokenTimeout,
    IdleTimeout,
    ProviderExhausted,
    QuotaExhausted,
    StreamInterrupted,
    error_kind,
    redact,
)
from rxllm.events import Event, TextDelta, Usage, is_content
from rxllm.operators._breaker import BreakerState, CircuitBreaker, Permit
from rxllm.operators._resil import (
    ErrorFilter,
    Lean,
    Slot,
    as_predicate,
    backoff,
    check_retry_settings,
    clock_for,
    is_retryable,
    partial_response,
    recoverable,
    should_fall_over,
    subscribe_lean,
)
from rxllm.request import Request
from rxllm.response import Accumulator

__all__ = [
    "DEFAULT_EXHAUSTED_FOR",
    "BreakerPolicy",
    "BreakerState",
    "Chain",
    "CircuitBreaker",
    "CircuitChangeInfo",
    "FallbackInfo",
    "Hooks",
    "RequestEndInfo",
    "RequestStartInfo",
    "RetryInfo",
    "RetryPolicy",
    "StreamingProvider",
    "exhausted_until",
    "get_breaker",
    "mark_exhausted",
    "reset_registry",
]

_log = logging.getLogger("rxllm")

DEFAULT_EXHAUSTED_FOR = 300.0
"""Seconds a provider stays exhausted after a ``QuotaExhausted`` without ``reset_at``."""


@runtime_checkable
class StreamingProvider(Protocol):
    """What a chain can stream from: ``rxllm.provider(...)`` or any object like it.

    ``stream(request)`` returns a cold Observable: each subscription makes one request and
    disposing it closes that request. A provider may also have ``cost_per_token: float |
    None`` (read with ``getattr``; used by ``Chain(order="cost")``).
    """

    @property
    def name(self) -> str:
        """The provider's name: keys its circuit breaker and its exhaustion."""
        ...

    def stream(self, request: Request) -> Observable[Event]:
        """A cold Observable of the response events for ``request``."""
        ...


# --- policies -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How a chain retries one provider before it falls over.

    Attributes:
        attempts: tries per provider, the first included (1: never retry).
        wait_initial, wait_max: the backoff's first wait and cap, in seconds. The wait
            before retry ``n`` (0 for the first) is
            ``min(wait_max, wait_initial * 2**n) * (1 - jitter * random())``, raised to the
            error's ``retry_after`` when it has one.
        jitter: the random fraction of each wait, from 0 to 1.
        max_retry_after: the longest ``retry_after`` the chain ever sleeps. A provider-
            requested wait is slept only when no other provider can take the request;
            above this bound the chain gives up on the provider at once.
        on: which errors are retried (default: the error's ``retryable`` attribute).
        random: floats in [0, 1) for the jitter (tests pass a fixed source).
    """

    attempts: int = 3
    wait_initial: float = 0.5
    wait_max: float = 8.0
    jitter: float = 0.5
    max_retry_after: float = 120.0
    on: ErrorFilter | None = None
    random: Callable[[], float] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_retry_settings(
            attempts=self.attempts,
            wait_initial=self.wait_initial,
            wait_max=self.wait_max,
            jitter=self.jitter,
            max_retry_after=self.max_retry_after,
        )

    def wait(self, retry: int) -> float:
        """The backoff before retry number ``retry`` (0 for the first), without
        ``retry_after``."""
        return backoff(
            retry,
            wait_initial=self.wait_initial,
            wait_max=self.wait_max,
            jitter=self.jitter,
            random=self.random or _random.random,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerPolicy:
    """Settings of the circuit breaker a chain creates for each provider.

    The breaker of a provider is created by the first chain that uses its name, with that
    chain's policy and clock; later chains share it as it is (see ``get_breaker``).

    Attributes:
        failure_threshold: open after this many consecutive failures (``None``: off).
        failure_rate: open when this share of calls failed within ``window`` seconds,
            once ``min_calls`` calls were made there (``None``: off).
        window, min_calls: the failure-rate window, in seconds, and its minimum of calls.
        open_for: seconds an open breaker refuses calls before half-open probes.
        half_open_probes: concurrent probes a half-open breaker lets through.
    """

    failure_threshold: int | None = 5
    failure_rate: float | None = None
    window: float = 60.0
    min_calls: int = 10
    open_for: float = 30.0
    half_open_probes: int = 1

    def __post_init__(self) -> None:
        self.build("check")  # raises ConfigError for impossible settings

    def build(self, name: str, clock: Callable[[], float] | None = None) -> CircuitBreaker:
        """A new ``CircuitBreaker`` called ``name`` with these settings."""
        return CircuitBreaker(
            name,
            failure_threshold=self.failure_threshold,
            failure_rate=self.failure_rate,
            window=self.window,
            min_calls=self.min_calls,
            open_for=self.open_for,
            half_open_probes=self.half_open_probes,
            clock=clock,
        )


# --- hooks --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestStartInfo:
    """An attempt is about to be made: ``attempt`` counts tries of ``provider`` from 1."""

    provider: str
    attempt: int
    request: Request = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestEndInfo:
    """An attempt ended.

    Attributes:
        outcome: ``"success"``, ``"cancelled"`` (the consumer disposed) or the error's
            kind (``"rate_limited"``, ``"interrupted"``, ``"first_token_timeout"``...).
        error: the error, for an outcome that is one.
        status: the HTTP status the error carried, if any.
        time_to_first_token: seconds from the attempt's start to its first content event.
        duration: seconds from the attempt's start to its end.
        usage: the last ``Usage`` event of the attempt.
    """

    provider: str
    attempt: int
    outcome: str
    error: BaseException | None = None
    status: int | None = None
    time_to_first_token: float | None = None
    duration: float = 0.0
    usage: Usage | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FallbackInfo:
    """The chain moves from ``from_provider`` to ``to_provider`` because of ``reason``
    (an error kind, ``"circuit_open"`` or ``"exhausted"``)."""

    from_provider: str
    to_provider: str
    reason: str
    error: BaseException | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryInfo:
    """``provider`` will be tried again (try number ``attempt``) after ``wait`` seconds."""

    provider: str
    attempt: int
    wait: float
    error: BaseException


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitChangeInfo:
    """A call of this chain moved ``provider``'s breaker from ``old`` to ``new``."""

    provider: str
    old: BreakerState
    new: BreakerState


@dataclass(frozen=True, slots=True, kw_only=True)
class Hooks:
    """Callbacks a chain fires; each gets one info object and its result is ignored.

    Hooks run synchronously on the stream's thread, so they should be quick. One that
    raises is logged (``logging.getLogger("rxllm")``) and the stream goes on.
    """

    on_request_start: Callable[[RequestStartInfo], object] | None = None
    on_request_end: Callable[[RequestEndInfo], object] | None = None
    on_fallback: Callable[[FallbackInfo], object] | None = None
    on_retry: Callable[[RetryInfo], object] | None = None
    on_circuit_change: Callable[[CircuitChangeInfo], object] | None = None


def _fire(hook: Callable[[Any], object] | None, info: object) -> None:
    if hook is None:
        return
    try:
        hook(info)
    except Exception:  # noqa: BLE001 - a hook must never break a stream
        _log.exception("rxllm hook %s raised", getattr(hook, "__name__", repr(hook)))


# --- the shared registry ------------------------------------------------------------------

_lock = threading.Lock()
_breakers: dict[str, CircuitBreaker] = {}
_exhausted: dict[str, float] = {}


def _breaker_for(name: str, policy: BreakerPolicy, clock: Callable[[], float]) -> CircuitBreaker:
    with _lock:
        breaker = _breakers.get(name)
        if breaker is None:
            breaker = _breakers[name] = policy.build(name, clock)
        return breaker


def get_breaker(name: str) -> CircuitBreaker | None:
    """The circuit breaker shared by every chain for the provider ``name``, if one exists."""
    with _lock:
        return _breakers.get(name)


def mark_exhausted(name: str, until: float) -> None:
    """Skip the provider ``name`` in every chain until the UNIX time ``until``."""
    with _lock:
        _exhausted[name] = max(until, _exhausted.get(name, until))


def exhausted_until(name: str, now: float) -> float | None:
    """The UNIX time until which ``name`` is exhausted, or ``None`` if it is not at ``now``."""
    with _lock:
        until = _exhausted.get(name)
        if until is None:
            return None
        if now >= until:
            del _exhausted[name]
            return None
        return until


def reset_registry() -> None:
    """Forget every shared breaker and exhaustion mark (for tests)."""
    with _lock:
        _breakers.clear()
        _exhausted.clear()


# --- the chain ----------------------------------------------------------------------------

_DEFAULT_RETRY = RetryPolicy()
_DEFAULT_BREAKER = BreakerPolicy()
_NO_HOOKS = Hooks()


class Chain:
    """Providers tried in turn under the first-token rule (see the module docstring).

    Args:
        providers: the ``StreamingProvider`` objects, in order of preference.
        retry: how each provider is retried (``None``: one try each).
        breaker: the settings of each provider's shared breaker (``None``: no breakers).
        hooks: callbacks for requests, fallbacks, retries and breaker changes.
        first_token_timeout: seconds an attempt may take to its first content event;
            a miss is a ``FirstTokenTimeout`` before content (the request is closed).
        idle_timeout: seconds without any event after content before the stream ends
            with ``StreamInterrupted`` (cause ``IdleTimeout``; the request is closed).
        order: ``"given"``, or ``"cost"`` for ascending ``cost_per_token`` (unknown last).
        fallback_on: which errors fall over (default: DESIGN.md's classification).
        exhausted_for: seconds to skip a provider after a ``QuotaExhausted`` that did not
            say when the quota resets.
        scheduler: where waits and timeouts are timed (default: ``scheduler_for``).
    """

    def __init__(
        self,
        providers: Iterable[StreamingProvider],
        *,
        retry: RetryPolicy | None = _DEFAULT_RETRY,
        breaker: BreakerPolicy | None = _DEFAULT_BREAKER,
        hooks: Hooks | None = None,
        first_token_timeout: float | None = None,
        idle_timeout: float | None = None,
        order: Literal["given", "cost"] = "given",
        fallback_on: ErrorFilter | None = None,
        exhausted_for: float = DEFAULT_EXHAUSTED_FOR,
        scheduler: abc.SchedulerBase | None = None,
    ) -> None:
        chosen = list(providers)
        if not chosen:
            raise ConfigError("a chain needs at least one provider")
        for p in chosen:
            if not isinstance(getattr(p, "name", None), str) or not callable(
                getattr(p, "stream", None)
            ):
                raise ConfigError("a chain's providers need a name and a stream(request)")
        if order == "cost":
            chosen.sort(key=_cost_key)
        elif order != "given":
            raise ConfigError('order is "given" or "cost"')
        for value in (first_token_timeout, idle_timeout):
            if value is not None and not value > 0:
                raise ConfigError("timeouts are positive numbers of seconds")
        if exhausted_for < 0:
            raise ConfigError("exhausted_for must not be negative")
        self._providers = tuple(chosen)
        self._retry = retry or RetryPolicy(attempts=1)
        self._retry_on = as_predicate(self._retry.on, is_retryable)
        self._fallback_on = as_predicate(fallback_on, should_fall_over)
        self._breaker = breaker
        self._hooks = hooks or _NO_HOOKS
        self._first_token_timeout = first_token_timeout
        self._idle_timeout = idle_timeout
        self._exhausted_for = float(exhausted_for)
        self._scheduler = scheduler

    @property
    def providers(self) -> tuple[StreamingProvider, ...]:
        """The providers in the order they are tried."""
        return self._providers

    def __repr__(self) -> str:
        return f"Chain({[p.name for p in self._providers]!r})"

    def stream(self, request: Request) -> Observable[Event]:
        """A cold Observable of the first provider that gets to its first token.

        Each subscription runs the whole chain afresh. The stream ends with the
        provider's completion, a ``StreamInterrupted`` after content, a ``BadRequest`` (or
        another error outside the classification) as is, or ``AllProvidersFailed``.
        Disposing the subscription closes the current attempt's request.
        """

        def subscribe(
            observer: abc.ObserverBase[Event], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            run = _Run(self, request, observer, scheduler)
            run.advance(None, "", None)
            return Disposable(run.dispose)

        return Lean(subscribe)


def _cost_key(provider: StreamingProvider) -> tuple[bool, float]:
    cost = getattr(provider, "cost_per_token", None)
    return (cost is None, float(cost) if cost is not None else 0.0)


class _Run:
    """One subscription to ``Chain.stream``: the providers, attempts and hooks of it."""

    __slots__ = (
        "attempts",
        "breaker",
        "cancel_attempt",
        "chain",
        "clock",
        "done",
        "errors",
        "index",
        "observer",
        "permit",
        "provider",
        "request",
        "sched",
        "slot",
        "subscribe_scheduler",
        "timer",
        "tries",
    )

    def __init__(
        self,
        chain: Chain,
        request: Request,
        observer: abc.ObserverBase[Event],
        subscribe_scheduler: abc.SchedulerBase | None,
    ) -> None:
        self.chain = chain
        self.request = request
        self.observer = observer
        self.subscribe_scheduler = subscribe_scheduler
        self.sched = scheduler_for(chain._scheduler, subscribe_scheduler)
        self.clock = clock_for(self.sched)
        self.index = -1
        self.tries = 0
        self.attempts: list[Attempt] = []
        self.errors: list[Exception] = []
        self.slot = Slot()
        self.timer: abc.DisposableBase | None = None
        self.done = False
        self.provider: StreamingProvider | None = None
        self.breaker: CircuitBreaker | None = None
        self.permit: Permit | None = None
        self.cancel_attempt: Callable[[], None] | None = None

    # --- choosing a provider -------------------------------------------------------------

    def _wall(self) -> float:
        return self.sched.to_seconds(self.sched.now)

    def _circuit_changed(
        self, breaker: CircuitBreaker, old: BreakerState, new: BreakerState
    ) -> None:
        _fire(
            self.chain._hooks.on_circuit_change,
            CircuitChangeInfo(provider=breaker.name, old=old, new=new),
        )

    def _breaker_of(self, name: str) -> CircuitBreaker | None:
        policy = self.chain._breaker
        return None if policy is None else _breaker_for(name, policy, self.clock)

    def _skip(self, name: str, kind: str, error: Exception) -> None:
        self.attempts.append(Attempt(name, kind, None, 0.0, getattr(error, "message", "")))
        self.errors.append(error)

    def advance(self, previous: str | None, reason: str, error: Exception | None) -> None:
        """Move to the next provider that may be called, or fail with AllProvidersFailed."""
        providers = self.chain._providers
        while not self.done:
            self.index += 1
            if self.index >= len(providers):
                self._all_failed()
                return
            provider = providers[self.index]
            name = provider.name
            if previous is not None:
                _fire(
                    self.chain._hooks.on_fallback,
                    FallbackInfo(
                        from_provider=previous, to_provider=name, reason=reason, error=error
                    ),
                )
            until = exhausted_until(name, self._wall())
            if until is not None:
                error = ProviderExhausted(
                    f"{name} is exhausted (quota or spend limit) until {until:.0f}",
                    provider=name,
                    reset_at=until,
                )
                self._skip(name, ProviderExhausted.kind, error)
                previous, reason = name, ProviderExhausted.kind
                continue
            breaker = self._breaker_of(name)
            permit = None
            if breaker is not None:
                permit = breaker.try_acquire(self._circuit_changed)
                if permit is None:
                    error = breaker.open_error()
                    self._skip(name, CircuitOpen.kind, error)
                    previous, reason = name, CircuitOpen.kind
                    continue
            self.provider, self.breaker, self.permit, self.tries = provider, breaker, permit, 0
            self._attempt()
            return

    def _next_available(self) -> bool:
        """Whether a provider after the current one could take the request now."""
        wall = None
        for provider in self.chain._providers[self.index + 1 :]:
            if wall is None:
                wall = self._wall()
            with _lock:
                until = _exhausted.get(provider.name)
            if until is not None and wall < until:
                continue
            breaker = get_breaker(provider.name) if self.chain._breaker is not None else None
            if breaker is None or breaker.available():
                return True
        return False

    def _all_failed(self) -> None:
        self.done = True
        summary = ", ".join(
            f"{a.provider} {a.kind}" + (f" ({a.status})" if a.status is not None else "")
            for a in self.attempts
        )
        error = AllProvidersFailed(
            f"every provider failed before the first token: {summary}",
            attempts=self.attempts,
            errors=self.errors,
        )
        if self.errors:
            error.__cause__ = self.errors[-1]
        self.observer.on_error(error)

    def _fail(self, error: Exception) -> None:
        if not self.done:
            self.done = True
            self.observer.on_error(error)

    # --- one attempt ---------------------------------------------------------------------

    def _attempt(self) -> None:
        # One set of closures per attempt: the per-event path reads cells, not attributes.
        provider = self.provider
        assert provider is not None
        chain = self.chain
        hooks = chain._hooks
        name = provider.name
        self.tries += 1
        attempt_no = self.tries
        breaker, permit = self.breaker, self.permit
        clock, sched, slot, observer = self.clock, self.sched, self.slot, self.observer
        downstream = observer.on_next
        first_token = chain._first_token_timeout
        idle = chain._idle_timeout
        held: list[Any] = []
        acc = Accumulator()
        add = acc.add
        texts: list[str] = []
        keep = texts.append
        t0 = clock()
        last = t0
        live = False
        ended = False
        ttft: float | None = None
        timer: abc.DisposableBase | None = None

        def finish(outcome: str, error: Exception | None) -> bool:
            nonlocal ended, timer
            if ended:
                return False
            ended = True
            if timer is not None:
                timer.dispose()
                timer = None
            status = getattr(error, "status", None)
            _fire(
                hooks.on_request_end,
                RequestEndInfo(
                    provider=name,
                    attempt=attempt_no,
                    outcome=outcome,
                    error=error,
                    status=status if isinstance(status, int) else None,
                    time_to_first_token=ttft,
                    duration=clock() - t0,
                    usage=acc.response().usage,
                ),
            )
            return True

        def on_next(event: Any) -> None:
            nonlocal live, last, ttft, timer
            if live:  # the per-event path once content flows
                if idle is not None:
                    last = clock()
                if event.__class__ is TextDelta:
                    keep(event.text)
                else:
                    add(event)
                downstream(event)
                return
            if ended:
                return
            if event.__class__ is TextDelta:
                keep(event.text)
            else:
                add(event)
            if not is_content(event):
                held.append(event)  # lifecycle frame: shown only if content follows
                return
            live = True
            last = clock()
            ttft = last - t0
            if timer is not None:
                timer.dispose()
                timer = None
            if idle is not None:
                timer = sched.schedule_relative(idle, fire_idle)
            for frame in held:
                downstream(frame)
            held.clear()
            downstream(event)

        def on_error(error: Exception) -> None:
            if ended:
                return
            if live:
                if not isinstance(error, StreamInterrupted):
                    error = StreamInterrupted(
                        f"{name} stream failed after the first token: {error_kind(error)}",
                        partial=partial_response(acc, texts),
                        cause=error,
                    )
                finish(error_kind(error), error)
                if breaker is not None and permit is not None:
                    breaker.record_failure(permit, self._circuit_changed)
                self._fail(error)
                return
            elapsed = clock() - t0
            finish(error_kind(error), error)
            if breaker is not None and permit is not None:
                breaker.record_error(permit, error, self._circuit_changed)
            self._failed_before_content(error, elapsed)

        def on_completed() -> None:
            if ended:
                return
            finish("success", None)
            if breaker is not None and permit is not None:
                breaker.record_success(permit, self._circuit_changed)
            if not live:
                for frame in held:
                    downstream(frame)
                held.clear()
            self.done = True
            observer.on_completed()

        def fire_first_token(_: abc.SchedulerBase, __: Any = None) -> None:
            if ended or live:
                return
            slot.clear()  # closes the upstream request
            assert first_token is not None
            on_error(
                FirstTokenTimeout(
                    f"{name}: no content within {first_token:g} s", timeout=first_token
                )
            )

        def fire_idle(_: abc.SchedulerBase, __: Any = None) -> None:
            nonlocal timer
            if ended:
                return
            assert idle is not None
            remaining = last + idle - clock()
            if remaining > 1e-9:
                timer = sched.schedule_relative(remaining, fire_idle)
                return
            slot.clear()  # closes the upstream request
            cause = IdleTimeout(f"{name}: no event for {idle:g} s after content", timeout=idle)
            on_error(
                StreamInterrupted(
                    f"{name} stream stalled after the first token: {cause}",
                    partial=partial_response(acc, texts),
                    cause=cause,
                )
            )

        def cancel() -> None:
            if finish("cancelled", None) and breaker is not None and permit is not None:
                breaker.release(permit)  # the consumer's cancellation is not the provider's fault

        self.cancel_attempt = cancel
        _fire(
            hooks.on_request_start,
            RequestStartInfo(provider=name, attempt=attempt_no, request=self.request),
        )
        if first_token is not None:
            timer = sched.schedule_relative(first_token, fire_first_token)
        try:
            source = provider.stream(self.request)
        except Exception as exc:  # noqa: BLE001 - treated as the attempt's failure
            on_error(exc)
            return
        slot.subscribe(
            lambda: subscribe_lean(
                source, on_next, on_error, on_completed, self.subscribe_scheduler
            )
        )

    def _failed_before_content(self, error: Exception, elapsed: float) -> None:
        provider = self.provider
        assert provider is not None
        name = provider.name
        status = getattr(error, "status", None)
        self.attempts.append(
            Attempt(
                name,
                error_kind(error),
                status if isinstance(status, int) else None,
                elapsed,
                redact(str(error)),
            )
        )
        self.errors.append(error)
        if self.done:
            return
        if not recoverable(error):
            self._fail(error)
            return
        kind = error_kind(error)
        policy = self.chain._retry
        if isinstance(error, QuotaExhausted | ProviderExhausted):
            reset_at = error.reset_at
            mark_exhausted(
                name, reset_at if reset_at is not None else self._wall() + self.chain._exhausted_for
            )
            self.advance(name, kind, error)
            return
        if self.chain._retry_on(error) and self.tries < policy.attempts:
            retry_after = getattr(error, "retry_after", None)
            busy = retry_after is not None or isinstance(error, FirstTokenTimeout)
            if busy and self._next_available():
                self.advance(name, kind, error)  # another provider can answer now: no sleep
                return
            if retry_after is not None and retry_after > policy.max_retry_after:
                self.advance(name, kind, error)
                return
            wait = policy.wait(self.tries - 1)
            if retry_after is not None:
                wait = max(wait, float(retry_after))
            _fire(
                self.chain._hooks.on_retry,
                RetryInfo(provider=name, attempt=self.tries + 1, wait=wait, error=error),
            )
            self.timer = self.sched.schedule_relative(wait, self._retry_now)
            return
        if self.chain._fallback_on(error):
            self.advance(name, kind, error)
            return
        self._fail(error)

    def _retry_now(self, _: abc.SchedulerBase, __: Any = None) -> None:
        self.timer = None
        if self.done:
            return
        provider = self.provider
        assert provider is not None
        breaker = self.breaker
        if breaker is not None:
            permit = breaker.try_acquire(self._circuit_changed)
            if permit is None:
                refused = breaker.open_error()
                self._skip(provider.name, CircuitOpen.kind, refused)
                self.advance(provider.name, CircuitOpen.kind, refused)
                return
            self.permit = permit
        self._attempt()

    def dispose(self) -> None:
        """The consumer disposed: close the current request, stop every timer."""
        self.done = True
        if self.timer is not None:
            self.timer.dispose()
            self.timer = None
        self.slot.dispose()
        if self.cancel_attempt is not None:
            self.cancel_attempt()
