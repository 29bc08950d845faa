"""Per-provider rate limits for ``rxllm.batch``: a sans-IO core, its asyncio pump, and the
provider wrapper that puts every attempt (first tries, retries, fallbacks) through them.

The core, ``RateState``, answers one question, ``delay(now, tokens)``: how long until a
request of ``tokens`` estimated tokens may start. Four rules, all must agree:

1. **cap**: at most ``rps`` grants in any window of ``1 + margin`` seconds (a sliding log),
   so the provider never sees more than ``rps`` requests in any one-second window as long
   as the network delays of two requests differ by less than ``margin``;
2. **pace**: grants are spaced ``(1 + margin) / (rps * scale)`` apart on average (``scale``
   is the adaptive factor below); a grant the event loop woke late for lets the next ones
   catch up, for at most ``margin`` seconds' worth, so timer lag does not lower the rate;
3. **pause**: nothing starts before the end of the last ``retry_after`` the provider sent;
4. **tokens**: the tokens reserved in the last 60 seconds plus this request's stay within
   ``tpm * scale`` (a request larger than that starts alone, once the window is empty).

Adaptation (AIMD): a 429 (``RateLimited``, not ``QuotaExhausted``) multiplies ``scale`` by
``backoff`` (0.5), at most once per ``cooldown`` second and only for a request granted
after the previous decrease (requests already in flight were sent at the old rate); from
the end of the pause ``scale`` climbs back by ``recover`` (0.1) per second, to 1. The cap
(rule 1) is the configured ``rps`` whatever ``scale`` is.

Tokens are reserved by an estimate before a request (its messages' characters / 4 plus
``max_tokens`` or the provider's running mean of output tokens) and corrected to the
reported ``Usage`` when the attempt ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxllm.errors import ConfigError, QuotaExhausted, RateLimited
from rxllm.events import Event, Usage
from rxllm.operators._resil import Lean, subscribe_lean
from rxllm.request import Request

__all__ = [
    "TOKEN_WINDOW",
    "Grant",
    "LimitedProvider",
    "Limiter",
    "RateLimit",
    "RateState",
    "estimate_tokens",
    "limiters_for",
    "prepaid_scope",
]

TOKEN_WINDOW = 60.0
"""Seconds over which ``tpm`` counts tokens."""

DEFAULT_OUTPUT_GUESS = 256
"""Output tokens assumed for a request before a provider reported any usage."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimit:
    """The rate a batch may use one provider at (see ``rxllm.batch`` and docs/batch.md).

    Attributes:
        rps: requests per second, for every attempt (retries and fallbacks included);
            never more than this many in any one-second window. ``None``: no request limit.
        tpm: tokens per minute (input + output), reserved by estimate and corrected to the
            reported usage. ``None``: no token limit.
        margin: seconds added to the one-second window the client counts in, to absorb the
            jitter of network delays (the provider counts arrivals, the client departures).
        backoff: the factor a 429 applies to the rate (0.5 halves it).
        min_scale: the rate never drops below this fraction of the configured one.
        recover: the fraction of the configured rate regained per second without a 429.
        cooldown: seconds between two decreases (a burst of 429s halves once).
        max_pause: the longest ``retry_after`` honoured, in seconds.
    """

    rps: float | None = None
    tpm: float | None = None
    margin: float = 0.05
    backoff: float = 0.5
    min_scale: float = 1 / 32
    recover: float = 0.1
    cooldown: float = 1.0
    max_pause: float = 120.0

    def __post_init__(self) -> None:
        if self.rps is None and self.tpm is None:
            raise ConfigError("a RateLimit needs rps, tpm or both")
        for name in ("rps", "tpm"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number, not {value!r}")
        if not 0 <= self.margin < 1:
            raise ConfigError("margin must be in [0, 1) seconds")
        if not 0 < self.backoff <= 1:
            raise ConfigError("backoff must be in (0, 1]")
        if not 0 < self.min_scale <= 1:
            raise ConfigError("min_scale must be in (0, 1]")
        for name in ("recover", "cooldown", "max_pause"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0")


class Grant:
    """Permission for one request: when it was given and the tokens it reserved."""

    __slots__ = ("counted", "time", "tokens")

    def __init__(self, time: float, tokens: float) -> None:
        self.time = time
        self.tokens = tokens
        self.counted = False  # whether its tokens are in the token window's sum

    def __repr__(self) -> str:
        return f"Grant(time={self.time:.6f}, tokens={self.tokens:g})"


class RateState:
    """The sans-IO limiter of one provider: every method takes the current time.

    ``delay(now, tokens)`` is 0 when a request may start now; ``grant`` records it.
    """

    __slots__ = (
        "_base",
        "_cap",
        "_grants",
        "_interval",
        "_last_decrease",
        "_reserved",
        "_since",
        "_tat",
        "_token_sum",
        "_window",
        "decreases",
        "granted",
        "limit",
        "paused_until",
        "refunded",
        "throttled",
    )

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._window = 1.0 + limit.margin
        self._interval = self._window / limit.rps if limit.rps is not None else 0.0
        self._cap = max(1, math.floor(limit.rps)) if limit.rps is not None else 0
        self._grants: deque[float] = deque()
        self._reserved: deque[Grant] = deque()
        self._token_sum = 0.0
        self._tat = -math.inf  # the theoretical time of the next grant (GCRA)
        self._last_decrease = -math.inf
        self._base = 1.0  # the scale at the start of the current recovery
        self._since = -math.inf  # when that recovery started
        self.paused_until = -math.inf
        self.granted = 0
        self.refunded = 0
        self.throttled = 0
        self.decreases = 0

    @property
    def reserved_tokens(self) -> float:
        """Tokens reserved (or, once settled, used) by the grants of the last minute."""
        return self._token_sum

    def scale(self, now: float) -> float:
        """The fraction of the configured rate in force at ``now`` (1 when not throttled)."""
        if self._base >= 1.0:
            return 1.0
        return min(1.0, self._base + self.limit.recover * max(0.0, now - self._since))

    def _prune(self, now: float) -> None:
        grants, edge = self._grants, now - self._window
        while grants and grants[0] <= edge:
            grants.popleft()
        reserved, edge = self._reserved, now - TOKEN_WINDOW
        while reserved and reserved[0].time <= edge:
            old = reserved.popleft()
            old.counted = False
            self._token_sum -= old.tokens

    def delay(self, now: float, tokens: float = 0.0) -> float:
        """Seconds from ``now`` until a request reserving ``tokens`` may start (0: now)."""
        self._prune(now)
        limit = self.limit
        wait = self.paused_until - now
        scale = self.scale(now)
        if limit.rps is not None:
            if len(self._grants) >= self._cap:
                # the cap: the grant that must leave the window before another may start
                index = len(self._grants) - self._cap
                wait = max(wait, self._grants[index] + self._window - now)
            wait = max(wait, self._tat - now)
        if limit.tpm is not None and self._reserved:
            budget = limit.tpm * scale
            excess = self._token_sum + tokens - budget
            if excess > 1e-9:
                freed = 0.0
                for entry in self._reserved:  # oldest first: wait until enough expires
                    freed += entry.tokens
                    if freed >= excess or freed >= self._token_sum:
                        wait = max(wait, entry.time + TOKEN_WINDOW - now)
                        break
        return max(wait, 0.0)

    def grant(self, now: float, tokens: float = 0.0) -> Grant:
        """Record a request starting at ``now`` (call only when ``delay`` is 0)."""
        grant = Grant(now, tokens)
        if self.limit.rps is not None:
            self._grants.append(now)
            interval = self._interval / self.scale(now)
            late = self._tat > now - self.limit.margin  # caught up within the margin
            self._tat = (self._tat if late else now) + interval
        if self.limit.tpm is not None:
            self._reserved.append(grant)
            self._token_sum += tokens
            grant.counted = True
        self.granted += 1
        return grant

    def refund(self, grant: Grant) -> None:
        """Give back a grant no request was made under (its slot and tokens free up)."""
        with contextlib.suppress(ValueError):  # unless already out of the window
            self._grants.remove(grant.time)
        self._drop_tokens(grant)
        self.refunded += 1

    def _drop_tokens(self, grant: Grant) -> None:
        if grant.counted:  # refunds are rare: a linear search is fine
            self._reserved.remove(grant)
            self._token_sum -= grant.tokens
            grant.counted = False

    def settle(self, grant: Grant, tokens: float) -> None:
        """Correct a grant's reserved tokens to what the request really used."""
        if grant.counted:
            self._token_sum += tokens - grant.tokens
        grant.tokens = tokens

    def on_throttled(self, now: float, grant: Grant | None, retry_after: float | None) -> bool:
        """The provider answered 429 to the request under ``grant``: pause for its
        ``retry_after`` and decrease the rate (see the module docstring). Returns whether the
        rate was decreased."""
        limit = self.limit
        self.throttled += 1
        if retry_after is not None and retry_after > 0:
            self.paused_until = max(self.paused_until, now + min(retry_after, limit.max_pause))
        sent_after = grant is None or grant.time > self._last_decrease
        if not sent_after or now - self._last_decrease < limit.cooldown:
            return False
        self._base = max(limit.min_scale, self.scale(now) * limit.backoff)
        self._since = max(now, self.paused_until)
        self._last_decrease = now
        self.decreases += 1
        return True


# --- the asyncio side ---------------------------------------------------------------------


class Limiter:
    """One provider's ``RateState`` with a FIFO of waiting requests and one timer.

    ``acquire`` grants at once when nobody waits and the state allows it; otherwise the
    request joins the queue, and a single timer wakes the head of the queue when the state
    says it may go. Cancelled waiters leave the queue; a grant whose waiter was cancelled
    is refunded.
    """

    __slots__ = ("_clock", "_mean_output", "_outputs", "_timer", "_waiters", "name", "state")

    def __init__(
        self, name: str, limit: RateLimit, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        self.state = RateState(limit)
        self._clock = clock
        self._waiters: deque[tuple[asyncio.Future[Grant], float]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._mean_output = float(DEFAULT_OUTPUT_GUESS)
        self._outputs = 0

    @property
    def limit(self) -> RateLimit:
        """The configured limit."""
        return self.state.limit

    @property
    def waiting(self) -> int:
        """Requests waiting for a grant."""
        return sum(1 for fut, _ in self._waiters if not fut.done())

    @property
    def mean_output(self) -> float:
        """The running mean of output tokens per request (the guess until one reported)."""
        return self._mean_output

    def try_acquire(self, tokens: float = 0.0) -> Grant | None:
        """A grant now if nobody is waiting and the limit allows one, else ``None``."""
        if self._waiters:
            return None
        now = self._clock()
        if self.state.delay(now, tokens) > 0:
            return None
        return self.state.grant(now, tokens)

    async def acquire(self, tokens: float = 0.0) -> Grant:
        """Wait for a grant (first come, first served)."""
        grant = self.try_acquire(tokens)
        if grant is not None:
            return grant
        future: asyncio.Future[Grant] = asyncio.get_running_loop().create_future()
        self._waiters.append((future, tokens))
        if len(self._waiters) == 1:
            self._pump()
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.refund(future.result())
            raise

    def _pump(self) -> None:
        self._timer = None
        waiters, state = self._waiters, self.state
        while waiters:
            future, tokens = waiters[0]
            if future.done():
                waiters.popleft()
                continue
            now = self._clock()
            wait = state.delay(now, tokens)
            if wait > 0:
                self._schedule(wait)
                return
            waiters.popleft()
            future.set_result(state.grant(now, tokens))

    def _schedule(self, wait: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(wait, self._pump)

    def _poke(self) -> None:
        """Re-evaluate the head of the queue (after a refund or a change of the limits)."""
        if self._waiters:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return
            self._pump()

    def refund(self, grant: Grant) -> None:
        """Return an unused grant."""
        self.state.refund(grant)
        self._poke()

    def settle(self, grant: Grant, usage: Usage | None) -> None:
        """Correct the grant's tokens to ``usage`` and learn the mean output size."""
        if usage is None:
            return
        total = usage.total_tokens
        if total is None:
            total = (usage.input_tokens or 0) + (usage.output_tokens or 0)
        if usage.output_tokens is not None:
            self._outputs += 1
            n = min(self._outputs, 100)  # a running mean over about the last 100 requests
            self._mean_output += (usage.output_tokens - self._mean_output) / n
        self.state.settle(grant, float(total))

    def throttled(self, grant: Grant | None, retry_after: float | None) -> None:
        """The provider answered 429: pause and adapt down."""
        self.state.on_throttled(self._clock(), grant, retry_after)
        self._poke()

    def estimate(self, request: Request | None, text_chars: int = 0) -> float:
        """Tokens to reserve for ``request`` (or for ``text_chars`` characters of input)."""
        if self.state.limit.tpm is None:
            return 0.0
        if request is None:
            return text_chars / 4 + self._mean_output
        return estimate_tokens(request, self._mean_output)


def estimate_tokens(request: Request, output_guess: float = DEFAULT_OUTPUT_GUESS) -> float:
    """A request's tokens before it is sent: characters / 4 of its messages, tools and
    schema, plus ``max_tokens`` (or ``output_guess``)."""
    chars = sum(len(m.content or "") for m in request.messages)
    for tool in request.tools:
        chars += len(tool.name) + len(tool.description) + len(str(tool.parameters))
    if request.response_schema is not None:
        chars += len(str(request.response_schema))
    output = request.max_tokens if request.max_tokens is not None else output_guess
    return chars / 4 + output


# --- grants paid for before the pipeline is subscribed -----------------------------------

_prepaid: ContextVar[dict[str, Grant] | None] = ContextVar("rxllm_batch_prepaid", default=None)


@contextlib.contextmanager
def prepaid_scope(limiter: Limiter, grant: Grant) -> Iterator[None]:
    """While subscribing a row's pipeline, offer ``grant`` to the first attempt of the
    provider ``limiter`` belongs to, so a row waits for the rate limiter *before* its chain
    starts (a first-token timeout then never counts that wait). On exit an unused grant is
    refunded."""
    offer = {limiter.name: grant}
    token = _prepaid.set(offer)
    try:
        yield
    finally:
        _prepaid.reset(token)
        leftover = list(offer.values())
        offer.clear()  # contexts copied meanwhile (timers, tasks) find nothing left
        for unused in leftover:
            limiter.refund(unused)


def _take_prepaid(name: str) -> Grant | None:
    offer = _prepaid.get()
    if not offer:
        return None
    return offer.pop(name, None)


# --- the provider wrapper -----------------------------------------------------------------


class LimitedProvider:
    """A provider whose every request waits for its ``Limiter`` first.

    ``stream(request)`` is cold like the wrapped provider's: each subscription takes a
    grant (the row's prepaid one, at once when the limit allows, or after waiting in the
    queue), then subscribes the wrapped stream. It watches the events go by: ``Usage``
    settles the grant's tokens, a ``RateLimited`` error (a 429) pauses and slows the
    limiter. Disposing while waiting leaves the queue; every other attribute (``model``,
    ``dialect``, ``base_url``...) is the wrapped provider's.
    """

    __slots__ = ("_inner", "limiter")

    def __init__(self, inner: Any, limiter: Limiter) -> None:
        self._inner = inner
        self.limiter = limiter

    @property
    def name(self) -> str:
        """The wrapped provider's name."""
        return str(self._inner.name)

    @property
    def cost_per_token(self) -> float | None:
        """The wrapped provider's cost per token (``None`` if unknown)."""
        cost = getattr(self._inner, "cost_per_token", None)
        return None if cost is None else float(cost)

    @property
    def wrapped(self) -> Any:
        """The provider requests go to."""
        return self._inner

    def __getattr__(self, name: str) -> Any:
        if name == "_inner":  # not set yet (a copy being built): no recursion
            raise AttributeError(name)
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        return f"LimitedProvider({self._inner!r})"

    def stream(self, request: Request) -> Observable[Event]:
        """A cold Observable of the wrapped provider's events, started under the limit."""
        inner, limiter = self._inner, self.limiter
        name = self.name

        def subscribe(
            observer: abc.ObserverBase[Event], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            attempt = _Attempt(inner, limiter, request, observer, scheduler)
            grant = _take_prepaid(name)
            if grant is not None:
                tokens = limiter.estimate(request)
                if tokens:
                    limiter.state.settle(grant, tokens)
            else:
                grant = limiter.try_acquire(limiter.estimate(request))
            if grant is not None:
                attempt.start(grant)
            else:
                attempt.wait()
            return Disposable(attempt.dispose)

        return Lean(subscribe)


class _Attempt:
    """One subscription to a ``LimitedProvider`` stream."""

    __slots__ = (
        "disposed",
        "grant",
        "inner",
        "limiter",
        "observer",
        "request",
        "scheduler",
        "settled",
        "subscription",
        "task",
        "usage",
    )

    def __init__(
        self,
        inner: Any,
        limiter: Limiter,
        request: Request,
        observer: abc.ObserverBase[Event],
        scheduler: abc.SchedulerBase | None,
    ) -> None:
        self.inner = inner
        self.limiter = limiter
        self.request = request
        self.observer = observer
        self.scheduler = scheduler
        self.grant: Grant | None = None
        self.usage: Usage | None = None
        self.subscription: abc.DisposableBase | None = None
        self.task: asyncio.Task[None] | None = None
        self.disposed = False
        self.settled = False

    def wait(self) -> None:
        async def run() -> None:
            grant = await self.limiter.acquire(self.limiter.estimate(self.request))
            if self.disposed:
                self.limiter.refund(grant)
                return
            self.start(grant)

        self.task = asyncio.get_running_loop().create_task(run(), name="rxllm:batch-limit")

    def start(self, grant: Grant) -> None:
        self.grant = grant
        observer = self.observer
        downstream = observer.on_next

        def on_next(event: Any) -> None:
            if event.__class__ is Usage:
                self.usage = event
            downstream(event)

        def on_error(error: Exception) -> None:
            if isinstance(error, RateLimited) and not isinstance(error, QuotaExhausted):
                self.limiter.throttled(grant, error.retry_after)
            self.settle()
            observer.on_error(error)

        def on_completed() -> None:
            self.settle()
            observer.on_completed()

        try:
            source = self.inner.stream(self.request)
        except Exception as exc:  # noqa: BLE001 - the attempt's failure, as in Chain
            on_error(exc)
            return
        self.subscription = subscribe_lean(source, on_next, on_error, on_completed, self.scheduler)

    def settle(self) -> None:
        if not self.settled and self.grant is not None:
            self.settled = True
            self.limiter.settle(self.grant, self.usage)

    def dispose(self) -> None:
        self.disposed = True
        if self.task is not None and not self.task.done():
            self.task.cancel()
        if self.subscription is not None:
            self.subscription.dispose()
            self.subscription = None
        self.settle()


def limiters_for(
    names: Iterable[str], rate: RateLimit | Mapping[str, RateLimit] | None
) -> dict[str, Limiter]:
    """One ``Limiter`` per provider name that has a limit (``"*"``: every other name)."""
    if rate is None:
        return {}
    out: dict[str, Limiter] = {}
    for name in names:
        if name in out:
            continue
        if isinstance(rate, RateLimit):
            limit: RateLimit | None = rate
        else:
            limit = rate.get(name, rate.get("*"))
        if limit is not None:
            out[name] = Limiter(name, limit)
    return out
