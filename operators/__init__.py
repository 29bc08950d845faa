"""rxllm's operators: pure Rx operators over provider event streams.

Each public function here owns the documentation (a marble diagram and an example) and
imports its implementation lazily from a private module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from reactivex import Observable
from reactivex.abc import SchedulerBase

from rxllm.typing import Operator, T

from ._breaker import CircuitBreaker
from ._flowstats import FlowStats
from ._validtypes import PatchContext, ValidationReport, ValidationStats

if TYPE_CHECKING:
    from rxllm.schema import SchemaRegistry

    from ._resil import ErrorFilter
    from ._validtypes import PatchFunction, SchemaSource

__all__ = [
    "CircuitBreaker",
    "FlowStats",
    "PatchContext",
    "ValidationReport",
    "ValidationStats",
    "circuit_breaker",
    "coalesce",
    "drop_oldest",
    "fallback",
    "first_token_timeout",
    "idle_timeout",
    "json_items",
    "json_snapshots",
    "latest",
    "retry",
    "validate",
    "window",
]


def fallback(
    *alternatives: Observable[T] | Callable[[], Observable[T]],
    on: ErrorFilter | None = None,
) -> Operator[T, T]:
    """Hand the stream to the next source if it fails before its first token.

    Lifecycle frames (``Started``, ``Usage``) are held back until the first content event,
    so a source that fails before content leaves no trace downstream and the consumer never
    sees an event twice. After the first token an error passes through untouched (the
    transport has already made it a ``StreamInterrupted`` with the partial response). When
    the last alternative fails too, its error is raised as is.

    .. marble::
        -s-#                    (primary: Started "s", then a 429 before content)
           -t-a-b-|             (alt, subscribed when the primary fails)
        [ fallback(alt) ]
        -------(ta)-b-|         (alt's Started "t" leaves with its first token; no "s")

        -s-a-#                  (primary fails after its first token)
        [ fallback(alt) ]
        -s-a-#                  (the error passes through; alt is never subscribed)

    Args:
        alternatives: cold Observables, or zero-argument factories returning one (called
            only when needed), tried in order.
        on: which errors fall over: an exception class, a tuple of them or a predicate.
            The default follows DESIGN.md: connect errors, timeouts (first-token
            included), 401/403, 408, 409, 429, 5xx, 529, in-band errors, ``CircuitOpen``,
            ``ProviderExhausted`` and an ``IncompleteStream`` before content; never
            ``BadRequest`` (400/404/422), never a ``StreamInterrupted`` after content.

    Example::

        stream = gpt.stream(request).pipe(
            ops.fallback(lambda: claude.stream(request), lambda: gemini.stream(request))
        )
    """
    from ._fallback import fallback_

    return fallback_(*alternatives, on=on)


def retry(
    *,
    on: ErrorFilter | None = None,
    attempts: int = 3,
    wait_initial: float = 0.5,
    wait_max: float = 8.0,
    jitter: float = 0.5,
    max_retry_after: float = 120.0,
    scheduler: SchedulerBase | None = None,
    random: Callable[[], float] | None = None,
) -> Operator[T, T]:
    """Resubscribe to the source after a failure before its first token, with backoff.

    The wait before retry ``n`` (0 for the first) is::

        wait = min(wait_max, wait_initial * 2**n) * (1 - jitter * random())
        wait = max(wait, error.retry_after)          # when the provider sent one

    so it lies in ``[(1 - jitter) * base, base]`` and never below the provider's
    ``Retry-After``. A ``retry_after`` above ``max_retry_after`` fails at once instead of
    sleeping. Lifecycle frames of a failed attempt are dropped; after the first token
    nothing is retried (the error passes through), so no token is ever emitted twice.

    .. marble::
        -s-#                    (503 before content)
             -s-a-b-|           (second subscription, after the backoff wait)
        [ retry(attempts=3) ]
        ---------(sa)-b-|       (the failed try's "s" is dropped; no token twice)

    Args:
        on: which errors to retry: an exception class, a tuple of them or a predicate.
            Default: the error's ``retryable`` attribute (429, 408, 409, 5xx, 529, in-band
            server errors, connect errors, timeouts); no silent catch-all.
        attempts: tries in all, the first included.
        wait_initial, wait_max: the backoff's first wait and cap, in seconds.
        jitter: the fraction of each wait that is random, from 0 (none) to 1.
        max_retry_after: the longest ``retry_after`` worth waiting for, in seconds.
        scheduler: where waits are timed (default: ``rxllm.aio.scheduler_for``).
        random: a source of floats in [0, 1) for the jitter (tests pass a fixed one).

    Example::

        stream = gpt.stream(request).pipe(ops.retry(attempts=4, wait_max=4.0))
    """
    from ._retry import retry_

    return retry_(
        on=on,
        attempts=attempts,
        wait_initial=wait_initial,
        wait_max=wait_max,
        jitter=jitter,
        max_retry_after=max_retry_after,
        scheduler=scheduler,
        random=random,
    )


def circuit_breaker(breaker: CircuitBreaker) -> Operator[T, T]:
    """Guard the source with ``breaker``: while it is open, fail at once, making no request.

    Each subscription asks the breaker for a permit. Refused, the stream fails with
    ``CircuitOpen`` without subscribing upstream. Otherwise an error (before or after
    content) is recorded as a failure, a completed stream as a success, and a disposal by
    the consumer as neither (a ``BadRequest`` counts as neither too). Per event the
    operator does nothing at all. Share one ``CircuitBreaker`` between every stream of a
    provider (a ``rxllm.chain.Chain`` keeps one per provider name for you).

    .. marble::
        -#  -#  -#              (three failures: the breaker opens)
        [ circuit_breaker(CircuitBreaker("a", failure_threshold=3)) ]
        #                       (the fourth subscription: CircuitOpen, source untouched)
        ...open_for later: one half-open probe; its success closes the breaker

    Example::

        breaker = ops.CircuitBreaker("openai", failure_threshold=5, open_for=30.0)
        stream = gpt.stream(request).pipe(
            ops.circuit_breaker(breaker), ops.fallback(lambda: claude.stream(request))
        )
    """
    from ._breaker import circuit_breaker_

    return circuit_breaker_(breaker)


def first_token_timeout(
    seconds: float, *, scheduler: SchedulerBase | None = None
) -> Operator[T, T]:
    """Fail with ``FirstTokenTimeout`` if no content arrives within ``seconds``.

    The clock starts at subscription; lifecycle frames do not stop it, the first content
    event does. On timeout the upstream is disposed (closing its HTTP request) and the
    error goes downstream, where ``retry`` or ``fallback`` may take over.

    .. marble::
        -s--------a-|           (content arrives after 9 s)
        [ first_token_timeout(5) ]
        -s---#                  (FirstTokenTimeout at 5 s; upstream disposed)

    Example::

        stream = gpt.stream(request).pipe(
            ops.first_token_timeout(10.0), ops.fallback(lambda: claude.stream(request))
        )
    """
    from ._timeout import first_token_timeout_

    return first_token_timeout_(seconds, scheduler=scheduler)


def idle_timeout(seconds: float, *, scheduler: SchedulerBase | None = None) -> Operator[T, T]:
    """After the first token, fail if no event arrives for ``seconds``.

    The upstream is disposed (closing its HTTP request) and the stream ends with
    ``StreamInterrupted`` whose ``partial`` is the ``Response`` folded from every event
    that passed and whose ``cause`` is an ``IdleTimeout``. Before the first token the
    operator waits indefinitely (that is ``first_token_timeout``'s job). It keeps no timer
    per event: it notes when the last event passed and checks when its timer fires.

    .. marble::
        -s-a-b------------      (the provider stalls after "b")
        [ idle_timeout(5) ]
        -s-a-b-----#            (StreamInterrupted(partial.text == "ab") 5 s after "b")

    Example::

        stream = gpt.stream(request).pipe(ops.idle_timeout(30.0))
    """
    from ._timeout import idle_timeout_

    return idle_timeout_(seconds, scheduler=scheduler)


# --- flow control ---------------------------------------------------------------------------


def window(
    *,
    count: int | None = None,
    seconds: float | None = None,
    bytes: int | None = None,
    scheduler: SchedulerBase | None = None,
    size_of: Callable[[T], int] | None = None,
    stats: FlowStats | None = None,
) -> Operator[T, list[T]]:
    """Batch items into lists for sinks that write in batches (database rows, UI frames).

    A batch is emitted as soon as any bound is reached: ``count`` items, ``bytes`` bytes
    (as measured by ``size_of``), or ``seconds`` after the batch's *first* item arrived;
    what is left is emitted at completion. An error emits the batch in progress first, then
    passes through: nothing that arrived is lost. No empty batch is ever emitted. Without
    ``count`` a batch still never holds more than 65,536 items.

    .. marble::
        -a-b-c-d-e-|
        [ window(count=3) ]
        -----x-----(y,|)        x = [a, b, c], y = [d, e]

        -a-b--------c-#
        [ window(seconds=5) ]   (time runs from each batch's first item)
        -------x------(y,#)     x = [a, b] at a + 5 s; y = [c], then the error

    Args:
        count: the most items in a batch.
        seconds: the longest a batch stays open, from its first item.
        bytes: emit once the batch's items add up to this many bytes (one larger item
            makes a batch of its own).
        scheduler: where ``seconds`` is timed (default: ``rxllm.aio.scheduler_for``).
        size_of: an item's size in bytes; the default counts the UTF-8 text of deltas and
            strings, and the JSON of other events (``raw`` excluded) and values.
        stats: counters to fill: ``received`` items, ``emitted`` batches, ``merged`` =
            items beyond the first of each batch.

    Example::

        rows = stream.pipe(ops.json_items("people.item"), ops.window(count=500, seconds=1.0))
        rows.subscribe(lambda batch: db.insert_many(batch))
    """
    from ._window import window_

    return window_(
        count=count,
        seconds=seconds,
        bytes=bytes,
        scheduler=scheduler,
        size_of=size_of,
        stats=stats,
    )


def coalesce(
    *, max_chars: int = 65_536, max_pending: int = 256, stats: FlowStats | None = None
) -> Operator[T, T]:
    """Merge text deltas into bigger ones while the consumer lags; lossless, order kept.

    While the sink (``to_aiter``, the SSE gateway) keeps up, every item passes at once,
    unchanged. While the sink's valve is shut (its window is full), consecutive
    ``TextDelta``s, and consecutive ``ReasoningDelta``s without a signature, are merged
    into one pending delta that the sink receives the moment it has room; other events
    are never merged and keep their place. The source keeps reading meanwhile, so chunks
    grow with the client's lag. A merged delta has ``raw=None``. The lag threshold is the
    sink's window: ``to_aiter(..., window=1)`` coalesces whenever the consumer has an
    unread item. With no demand-aware sink the operator passes everything through.

    .. marble::
        -a-b-c-d-u-e-|          a..e: TextDelta, u: Usage
        [ coalesce() ]          (the sink keeps up)
        -a-b-c-d-u-e-|          (the very same objects)

        -a-b-c-d-u-e-|          (the sink's valve is shut from b to e)
        [ coalesce() ]
        -a----------(B,u,e,|)   B = TextDelta("bcd"); u and e keep their place

    Args:
        max_chars: the longest merged delta; a longer run starts a new pending delta.
        max_pending: pending items (a merged run counts as one) at which the source is
            paused (its valve shut) until the sink takes them, so memory stays bounded.
        stats: counters to fill: ``received``, ``emitted``, ``merged`` (deltas folded into
            an earlier one) and ``pauses``.

    Example::

        async for event in rxllm.to_aiter(stream.pipe(ops.coalesce()), window=1):
            await websocket.send(render(event))   # a slow client gets bigger chunks
    """
    from ._coalesce import coalesce_

    return coalesce_(max_chars=max_chars, max_pending=max_pending, stats=stats)


def latest(
    *,
    keep: Callable[[T], bool] | None = None,
    max_kept: int = 1024,
    stats: FlowStats | None = None,
) -> Operator[T, T]:
    """While the consumer lags, keep only the newest item (lossy: a live preview).

    Nothing is dropped while the sink keeps up. While its valve is shut, each new item
    replaces the one waiting; the sink gets the newest when it has room. ``Finished``
    (or whatever ``keep`` protects), completion and errors are never dropped, and keep
    their order. Each drop is counted in ``stats.dropped``. Same as ``drop_oldest(1)``.

    .. marble::
        -a-b-c-d-f-|            f: Finished; the sink's valve is shut from b to f
        [ latest() ]
        -a---------(d,f,|)      b and c dropped (stats.dropped == 2)

    Args:
        keep: items that must never be dropped (default: ``Finished`` events).
        max_kept: protected items held for a lagging sink before the source pauses.
        stats: counters to fill: ``received``, ``emitted``, ``dropped``, ``pauses``.

    Example::

        async for event in rxllm.to_aiter(progress.pipe(ops.latest()), window=1):
            show(event)                             # always the freshest state
    """
    from ._lossy import drop_oldest_

    return drop_oldest_(1, keep=keep, max_kept=max_kept, stats=stats)


def drop_oldest(
    limit: int,
    *,
    keep: Callable[[T], bool] | None = None,
    max_kept: int = 1024,
    stats: FlowStats | None = None,
) -> Operator[T, T]:
    """While the consumer lags, keep only the newest ``limit`` items (lossy, on request).

    Nothing is dropped while the sink keeps up. While its valve is shut, items wait in a
    buffer of ``limit``; when it is full, the oldest waiting item is dropped and counted in
    ``stats.dropped``. ``Finished`` (or whatever ``keep`` protects), completion and errors
    are never dropped and keep their order; the source keeps reading.

    .. marble::
        -a-b-c-d-e-f-|          f: Finished; the sink's valve is shut from b to f
        [ drop_oldest(2) ]
        -a-----------(d,e,f,|)  b and c dropped (stats.dropped == 2)

    Args:
        limit: droppable items kept while the sink lags (at least 1).
        keep: items that must never be dropped (default: ``Finished`` events).
        max_kept: protected items held for a lagging sink before the source pauses.
        stats: counters to fill: ``received``, ``emitted``, ``dropped``, ``pauses``.

    Example::

        stats = ops.FlowStats()
        feed = ticks.pipe(ops.drop_oldest(100, stats=stats))
    """
    from ._lossy import drop_oldest_

    return drop_oldest_(limit, keep=keep, max_kept=max_kept, stats=stats)


# --- structured output ----------------------------------------------------------------------


def json_items(
    prefix: str = "item",
    *,
    max_depth: int = 64,
    max_number_length: int = 100,
    max_string_length: int = 1024 * 1024,
    max_item_bytes: int = 8 * 1024 * 1024,
) -> Operator[Any, Any]:
    """Emit each JSON value found at ``prefix`` the moment its last character arrives.

    Consumes text deltas (``str`` or ``TextDelta``; other events such as ``Started``,
    ``Usage``, ``ReasoningDelta``, ``Finished`` are ignored) and feeds them to ijson's push
    parser (``yajl2_c``), so the total cost is linear in the stream's length. ``prefix``
    uses ijson's syntax: ``"people.item"`` for each element of the ``people`` array,
    ``"item"`` for a top-level array, ``""`` for whole documents. A container item is
    emitted at its closing bracket, a number when the following ``,`` or ``]`` arrives.
    Numbers are ``int``/``float`` (integers beyond signed 64 bits are ``InvalidJson``).
    Prose and a ```json fence before and after the document are skipped; several documents
    in a row each yield their items.

    Untrusted output is bounded before the parser sees it: nesting deeper than
    ``max_depth`` raises ``DepthExceeded``, a number literal longer than
    ``max_number_length`` ``NumberTooLong``, a string longer than ``max_string_length``
    ``StringTooLong``, an item over ``max_item_bytes`` ``ItemTooLarge``; bad JSON raises
    ``InvalidJson`` and a stream that stops inside the document ``IncompleteJson`` (with
    the last complete path). Items completed before any error are emitted first; the
    upstream's errors pass through.

    .. marble::
        -a---b----c--|          a = 'Here: {"people": [{"n": 1}', b = ', {"n"', c = ': 2}]}'
        [ json_items("people.item") ]
        -x--------y--|          x = {"n": 1}, y = {"n": 2}

    ``validate`` placed right after ``json_items`` fuses with it to see items while they
    are written (early rejection, repair of a truncated item); no one else sees that.

    Example::

        people = stream.pipe(ops.json_items("people.item"))
        people.subscribe(lambda person: print(person["name"]))
    """
    from ._json_items import json_items_

    return json_items_(
        prefix,
        max_depth=max_depth,
        max_number_length=max_number_length,
        max_string_length=max_string_length,
        max_item_bytes=max_item_bytes,
    )


def validate(
    schema: SchemaSource,
    *,
    on_invalid: Literal["skip", "halt", "patch"] = "skip",
    on_patch_fail: Literal["skip", "halt"] = "skip",
    patch: PatchFunction | None = None,
    on_report: Callable[[ValidationReport], None] | None = None,
    stats: ValidationStats | None = None,
    registry: SchemaRegistry | None = None,
    early: bool = True,
) -> Operator[Any, Any]:
    """Check each item against a JSON Schema (Draft 2020-12) and act on invalid ones.

    The schema is compiled once (``rxllm.schema.compile_schema``); a remote ``$ref`` is a
    ``SchemaError`` at once and is never fetched. ``schema`` may be a schema, a
    ``CompiledSchema``, a list of them (versions of a rolling update: an item valid under
    any passes, the report names which), or a ``$id`` looked up in ``registry``.

    - ``skip``: drop the item and report it.
    - ``halt``: dispose the upstream at once (cancelling the provider request) and fail
      with ``ValidationHalted(item, index, errors)``. Right after ``json_items`` it does
      not wait for the item to close: a wrong item type, a forbidden property or a
      property whose value is already invalid halts as soon as it is written.
    - ``patch``: repair deterministically (schema defaults, lossless coercion such as
      ``"42"`` -> 42, case-insensitive enum match, dropping forbidden properties) or with
      ``patch(item, context)`` (``context.builtin(item)`` is the built-in repair), then
      validate once more; still invalid falls back to ``on_patch_fail``.

    Text cut inside an item (``max_tokens``): ``skip`` drops it and keeps every complete
    item, ``halt`` raises ``IncompleteJson`` (the path of the last complete value),
    ``patch`` closes the open containers and keeps the item only if it then validates.
    Every outcome goes to ``on_report`` (a ``ValidationReport`` with the index, action,
    ``(json_pointer, message)`` errors, an RFC 6902 ``patch`` and the matching version)
    and into ``stats`` (``valid``, ``skipped``, ``patched``, ``halted``).

    .. marble::
        -a-b-c-|                b is invalid
        [ validate(schema, on_invalid="skip") ]
        -a---c-|

        -a-b-c-|
        [ validate(schema, on_invalid="halt") ]
        -a-#                    ValidationHalted(item=b, index=1); upstream disposed

    Example::

        stats = ops.ValidationStats()
        people = stream.pipe(
            ops.json_items("people.item"),
            ops.validate(person_schema, on_invalid="patch", stats=stats),
        )
    """
    from ._validate import validate_

    return validate_(
        schema,
        on_invalid=on_invalid,
        on_patch_fail=on_patch_fail,
        patch=patch,
        on_report=on_report,
        stats=stats,
        registry=registry,
        early=early,
    )


def json_snapshots(
    *,
    every_chars: int | None = 256,
    every_seconds: float | None = None,
    scheduler: SchedulerBase | None = None,
    copy: bool = False,
    max_depth: int = 64,
    max_number_length: int = 100,
    max_string_length: int = 1024 * 1024,
    max_item_bytes: int = 8 * 1024 * 1024,
) -> Operator[Any, Any]:
    """Emit the JSON document as parsed so far, throttled, for live UIs.

    The snapshot is the document built incrementally from parse events (containers
    closed; a value still being written is left out until it completes), emitted at most
    once per ``every_chars`` characters of text and/or once per ``every_seconds`` (on
    ``scheduler``, resolved at subscription), plus the final state of each document and of
    the stream. Total cost is linear in the stream: nothing is re-parsed. The snapshot is
    the one live object the operator keeps growing: read it in ``on_next``; pass
    ``copy=True`` to get a deep copy each time (costs the document's size per snapshot).
    Bounds and errors are those of ``json_items``.

    .. marble::
        -a-----b-----c-|        a = '{"x": [1,', b = ' 2], "y"', c = ': 3}'
        [ json_snapshots(every_chars=1) ]
        -A-----B-----C-|        A = {"x": [1]}, B = {"x": [1, 2]}, C = {"x": [1, 2], "y": 3}

    Example::

        stream.pipe(ops.json_snapshots(every_seconds=0.1)).subscribe(render)
    """
    from ._snapshots import json_snapshots_

    return json_snapshots_(
        every_chars=every_chars,
        every_seconds=every_seconds,
        scheduler=scheduler,
        copy=copy,
        max_depth=max_depth,
        max_number_length=max_number_length,
        max_string_length=max_string_length,
        max_item_bytes=max_item_bytes,
    )
