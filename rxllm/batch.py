"""Batch jobs: one pipeline over many rows, resumable, rate-limited per provider.

::

    from rxllm import batch, pipeline

    pipe = pipeline.load("extract.yaml")
    async with batch.run(pipe, "rows.jsonl", output="out.jsonl", concurrency=32,
                         rate=batch.RateLimit(rps=10, tpm=200_000)) as results:
        async for result in results:          # RowResult, in completion order
            print(result.id, result.ok, result.output)

* **Rows** are mappings with a unique id (``id_field``, default ``"id"``) and the fields the
  pipeline's template uses: a JSON-lines file (a path) or any (async) iterable. A row
  without an id, or a repeated id, is an error; for a file or a sequence it is found before
  anything is sent.
* **Output**: one JSON line per row, written the moment the row ends (``RowResult.to_json``):
  its text, items or folded response, usage, the provider that answered and every attempt;
  a failed row has ``"status": "failed"`` and its error kind (``bad_request`` for a 400),
  and the batch goes on.
* **Resume**: rows whose id is already in ``output`` are skipped, so nothing is paid for
  twice, also after a crash (``rxllm._batch_io``: whole-line writes, a partial last line is
  truncated). ``retry_failed=True`` runs the failed rows again.
* **Rate limits** per provider (``RateLimit``: requests per second, tokens per minute) apply
  to every attempt - first tries, retries and fallbacks - through
  ``pipeline.with_providers``; they adapt down on a 429 and recover slowly
  (``rxllm._batch_rate``). At most ``concurrency`` rows run at once.
* **Stopping**: ``stop()`` takes no new rows and lets running ones finish; ``cancel()`` also
  cancels the running ones (their requests are closed and they are not written, so a rerun
  does them). Either way the output stays resumable.

See docs/batch.md for the output format, the fsync policy and the CLI (``rxllm batch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast, runtime_checkable

import orjson
from reactivex import Observable

from ._batch_io import (
    FsyncPolicy,
    OutputFile,
    RowId,
    id_key,
    iter_jsonl,
    parse_row,
    row_id,
    scan_rows,
)
from ._batch_rate import Grant, LimitedProvider, Limiter, RateLimit, limiters_for, prepaid_scope
from .chain import FallbackInfo, Hooks, RequestEndInfo, RequestStartInfo, RetryInfo
from .errors import ConfigError, error_kind, redact
from .events import Event, TextDelta, Usage
from .response import Accumulator

if TYPE_CHECKING:
    from .transport import Provider

__all__ = [
    "DEFAULT_CONCURRENCY",
    "Batch",
    "BatchStats",
    "OutputKind",
    "Pipeline",
    "RateLimit",
    "RowAttempt",
    "RowId",
    "RowResult",
    "run",
]

DEFAULT_CONCURRENCY = 16
"""Rows in flight at once unless ``concurrency`` says otherwise."""

DEFAULT_FSYNC_INTERVAL = 1.0
"""Seconds between two ``fsync`` calls under the ``"interval"`` policy."""

OutputKind = Literal["text", "items", "events"]


@runtime_checkable
class Pipeline(Protocol):
    """What a batch runs: ``rxllm.pipeline.load(path)`` returns one.

    ``stream(row)`` is a cold Observable of the row's answer: ``str`` text deltas
    (``output == "text"``), parsed items (``"items"``) or ``rxllm.Event`` objects
    (``"events"``). ``hooks`` are merged with the spec's; ``on_event`` sees every raw
    provider event (``Started``, ``Usage``...) of the attempt that answered.
    ``with_providers(wrap)`` is a copy whose every provider is ``wrap(provider)``.
    """

    @property
    def name(self) -> str:
        """The pipeline's name."""
        ...

    @property
    def output(self) -> OutputKind:
        """What ``stream`` emits."""
        ...

    @property
    def providers(self) -> Mapping[str, Provider]:
        """The providers the pipeline may call, in order of preference."""
        ...

    def stream(
        self,
        row: Mapping[str, Any] | str,
        *,
        hooks: Hooks | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> Observable[Any]:
        """A cold Observable of the answer to ``row``."""
        ...

    def with_providers(self, wrap: Callable[[Provider], Any]) -> Pipeline:
        """A copy with every provider replaced by ``wrap(provider)``."""
        ...

    def with_base_urls(self, base_url_for: Callable[[Provider], str]) -> Pipeline:
        """A copy whose providers call ``base_url_for(provider)``."""
        ...


# --- results ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RowAttempt:
    """One request made for a row (a try of one provider).

    ``outcome`` is ``"success"``, ``"cancelled"`` or the error's kind (``"rate_limited"``,
    ``"bad_request"``...); ``status`` the HTTP status of an error; ``seconds`` from the
    attempt's start to its end (including any wait for the rate limiter after the first).
    """

    provider: str
    attempt: int
    outcome: str
    status: int | None = None
    seconds: float = 0.0
    input_tokens: int | None = None
    output_tokens: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (token counts only when reported)."""
        out: dict[str, Any] = {
            "provider": self.provider,
            "attempt": self.attempt,
            "outcome": self.outcome,
            "status": self.status,
            "seconds": round(self.seconds, 6),
        }
        if self.input_tokens is not None or self.output_tokens is not None:
            out["input_tokens"] = self.input_tokens
            out["output_tokens"] = self.output_tokens
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class RowResult:
    """The outcome of one row, as written to the output file.

    Attributes:
        id: the row's id.
        ok: whether the pipeline completed for the row.
        kind: what ``output`` holds: ``"text"`` (a ``str``), ``"items"`` (a list) or
            ``"events"`` (the folded ``Response`` as a dict).
        output: the answer; for a failed row, what arrived before the failure.
        usage: the answering attempt's token usage, if reported.
        provider: the provider that answered (or, for a failed row, the last one tried).
        attempts: every request made for the row, in order.
        error: the error's kind (``"bad_request"``, ``"all_failed"``, ``"interrupted"``...)
            when the row failed, else ``None``; ``message`` and ``status`` go with it.
        seconds: from the row's start to its end.
    """

    id: RowId
    ok: bool
    kind: OutputKind
    output: Any
    usage: Usage | None = None
    provider: str | None = None
    attempts: tuple[RowAttempt, ...] = ()
    error: str | None = None
    message: str | None = None
    status: int | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The output line as a dict: ``id``, ``status`` (``"ok"``/``"failed"``), the answer
        under ``text``, ``items`` or ``response``, ``usage``, ``provider``, ``attempts``,
        ``seconds`` and, for a failed row, ``error: {kind, message, status}``."""
        out: dict[str, Any] = {"id": self.id, "status": "ok" if self.ok else "failed"}
        out[_OUTPUT_KEY[self.kind]] = self.output
        out["usage"] = _usage_dict(self.usage)
        out["provider"] = self.provider
        out["attempts"] = [a.to_dict() for a in self.attempts]
        out["seconds"] = round(self.seconds, 6)
        if not self.ok:
            out["error"] = {"kind": self.error, "message": self.message, "status": self.status}
        return out

    def to_json(self) -> bytes:
        """The output line, without its newline (values JSON cannot hold become strings)."""
        return orjson.dumps(self.to_dict(), default=_json_default)


_OUTPUT_KEY: dict[str, str] = {"text": "text", "items": "items", "events": "response"}


def _usage_dict(usage: Usage | None) -> dict[str, int | None] | None:
    if usage is None:
        return None
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    return str(value)


@dataclass(slots=True, kw_only=True)
class BatchStats:
    """Live counters of a batch (the progress bar reads them; ``to_dict`` is the summary).

    Attributes:
        total: rows in the input, when known before the start (a file or a sequence).
        skipped: rows whose id was already in the output (not run again).
        ok, failed: rows finished in this run; ``failed_kinds`` counts the error kinds.
        running: rows in flight now.
        cancelled: rows cancelled by ``cancel()`` (not written; a rerun does them).
        items: items emitted (for ``"items"`` pipelines).
        input_tokens, output_tokens: tokens reported by every attempt.
        requests, retries, fallbacks: attempts made, retries and fallbacks among them.
        throttled: attempts answered 429.
        stopped: ``stop()`` or ``cancel()`` was called.
        started, finished: ``time.monotonic()`` at the start and at the end.
    """

    total: int | None = None
    skipped: int = 0
    ok: int = 0
    failed: int = 0
    failed_kinds: Counter[str] = field(default_factory=Counter)
    running: int = 0
    cancelled: int = 0
    items: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    retries: int = 0
    fallbacks: int = 0
    throttled: int = 0
    stopped: bool = False
    started: float = 0.0
    finished: float | None = None

    @property
    def done(self) -> int:
        """Rows finished in this run (ok or failed)."""
        return self.ok + self.failed

    @property
    def todo(self) -> int | None:
        """Rows this run has to do in all (``total`` minus ``skipped``), if known."""
        return None if self.total is None else max(0, self.total - self.skipped)

    @property
    def elapsed(self) -> float:
        """Seconds since the start (until the end once finished)."""
        if not self.started:
            return 0.0
        end = self.finished if self.finished is not None else time.monotonic()
        return max(0.0, end - self.started)

    @property
    def rows_per_second(self) -> float:
        """Finished rows per second over the whole run."""
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The summary as a JSON-ready dict."""
        todo = self.todo
        return {
            "total": self.total,
            "skipped": self.skipped,
            "ok": self.ok,
            "failed": self.failed,
            "failed_kinds": dict(sorted(self.failed_kinds.items())),
            "cancelled": self.cancelled,
            "remaining": None if todo is None else max(0, todo - self.done),
            "items": self.items,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "requests": self.requests,
            "retries": self.retries,
            "fallbacks": self.fallbacks,
            "throttled": self.throttled,
            "stopped": self.stopped,
            "seconds": round(self.elapsed, 3),
            "rows_per_second": round(self.rows_per_second, 2),
        }


# --- the batch ----------------------------------------------------------------------------

Rows = str | os.PathLike[str] | Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]]

_END = object()


def run(
    pipeline: Pipeline,
    rows: Rows,
    *,
    output: str | os.PathLike[str] | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    rate: RateLimit | Mapping[str, RateLimit] | None = None,
    id_field: str = "id",
    retry_failed: bool = False,
    fsync: FsyncPolicy = "interval",
    fsync_interval: float = DEFAULT_FSYNC_INTERVAL,
) -> Batch:
    """Run ``pipeline`` over ``rows``; iterate the result for each ``RowResult``.

    Args:
        pipeline: the ``Pipeline`` (``rxllm.pipeline.load(...)``).
        rows: a JSON-lines file (path) or an iterable / async iterable of mappings, each
            with a unique id in ``id_field``.
        output: the JSON-lines file rows are appended to and resumed from (``None``: no
            file, no resume).
        concurrency: rows in flight at once.
        rate: a ``RateLimit`` for every provider (each gets its own), or a mapping from
            provider name (``provider.name`` or the pipeline's key for it; ``"*"`` for the
            others) to ``RateLimit``. ``None``: no limits.
        id_field: the field holding each row's id.
        retry_failed: run rows recorded as failed in ``output`` again (their lines are
            removed first).
        fsync: ``"interval"`` (default: every ``fsync_interval`` seconds and at the end),
            ``"always"`` (each row on disk before it is reported) or ``"never"``.

    The returned ``Batch`` starts on the first ``async for`` step (or ``async with``) and is
    an async iterator of ``RowResult`` in completion order. Leave it with ``async with`` or
    ``await batch.aclose()`` when you stop iterating early.
    """
    return Batch(
        pipeline,
        rows,
        output=output,
        concurrency=concurrency,
        rate=rate,
        id_field=id_field,
        retry_failed=retry_failed,
        fsync=fsync,
        fsync_interval=fsync_interval,
    )


class Batch(AsyncIterator[RowResult]):
    """A running batch (see ``run``): an async iterator of ``RowResult``, with ``stats``,
    ``stop()``, ``cancel()`` and ``aclose()``."""

    def __init__(
        self,
        pipeline: Pipeline,
        rows: Rows,
        *,
        output: str | os.PathLike[str] | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        rate: RateLimit | Mapping[str, RateLimit] | None = None,
        id_field: str = "id",
        retry_failed: bool = False,
        fsync: FsyncPolicy = "interval",
        fsync_interval: float = DEFAULT_FSYNC_INTERVAL,
    ) -> None:
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigError("concurrency must be a positive integer")
        if fsync not in ("always", "interval", "never"):
            raise ConfigError('fsync is "always", "interval" or "never"')
        if not fsync_interval > 0:
            raise ConfigError("fsync_interval must be positive")
        if not id_field:
            raise ConfigError("id_field must name a field")
        if not isinstance(rate, RateLimit | Mapping | None):
            raise ConfigError("rate is a RateLimit or a mapping of provider name to RateLimit")
        self.pipeline = pipeline
        self.stats = BatchStats()
        self.limiters: dict[str, Limiter] = {}
        self.output_path = None if output is None else Path(output)
        self._rows = rows
        self._concurrency = concurrency
        self._rate = rate
        self._id_field = id_field
        self._retry_failed = retry_failed
        self._fsync: FsyncPolicy = fsync
        self._fsync_interval = fsync_interval
        self._kind: OutputKind = pipeline.output
        self._out: OutputFile | None = None
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=max(64, 2 * concurrency))
        self._workers: list[asyncio.Task[None]] = []
        self._supervisor: asyncio.Task[None] | None = None
        self._syncer: asyncio.Task[None] | None = None
        self._acquiring: set[asyncio.Task[Any]] = set()
        self._source: Iterator[tuple[RowId, Mapping[str, Any]]] | None = None
        self._async_source: AsyncIterator[tuple[RowId, Mapping[str, Any]]] | None = None
        self._seen: set[bytes] | None = None  # ids seen so far, for sources not checked ahead
        self._pull_lock = asyncio.Lock()
        self._primary: Limiter | None = None
        self._running: Pipeline = pipeline
        self._state: Literal["new", "starting", "running", "ended", "closed"] = "new"
        self._error: BaseException | None = None
        self._stopping = False
        self._cancelling = False
        self._start_lock = asyncio.Lock()

    # --- control ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Take no new rows; running rows finish and are written. Rows still waiting for
        their first rate-limit grant have sent nothing and are left for a rerun."""
        self._stopping = True
        self.stats.stopped = True
        for task in tuple(self._acquiring):
            task.cancel()

    def cancel(self) -> None:
        """Stop and cancel the running rows too: their requests are closed and they are not
        written (a rerun does them)."""
        self.stop()
        self._cancelling = True
        for task in self._workers:
            task.cancel()

    @property
    def stopping(self) -> bool:
        """Whether ``stop()`` or ``cancel()`` was called (or the batch met an error)."""
        return self._stopping

    @property
    def kind(self) -> OutputKind:
        """What each ``RowResult.output`` holds."""
        return self._kind

    def summary(self) -> dict[str, Any]:
        """The stats as a JSON-ready dict, with the output file and each provider's limiter."""
        out = self.stats.to_dict()
        out["pipeline"] = getattr(self.pipeline, "name", None)
        out["output"] = None if self.output_path is None else str(self.output_path)
        out["providers"] = {
            name: {
                "rps": limiter.limit.rps,
                "tpm": limiter.limit.tpm,
                "granted": limiter.state.granted - limiter.state.refunded,
                "throttled": limiter.state.throttled,
                "decreases": limiter.state.decreases,
                "scale": round(limiter.state.scale(time.monotonic()), 3),
            }
            for name, limiter in sorted(self.limiters.items())
        }
        return out

    # --- iteration -------------------------------------------------------------------------

    def __aiter__(self) -> Batch:
        """The batch itself: ``async for result in batch``."""
        return self

    async def __anext__(self) -> RowResult:
        """The next finished row (starting the batch first); at the end, the error that
        broke the batch if one did, else ``StopAsyncIteration``."""
        if self._state == "new":
            await self.start()
        if self._state in ("ended", "closed"):
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is _END:
            await self._finish()
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            raise StopAsyncIteration
        result: RowResult = item
        return result

    async def __aenter__(self) -> Batch:
        """Start the batch (see ``start``)."""
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the batch (see ``aclose``)."""
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel whatever still runs (rows in flight are not written), flush and close the
        output. Safe to call at any time, more than once."""
        if self._state == "closed":
            return
        self._stopping = self._cancelling = True
        tasks = [*self._workers, *self._acquiring]
        if self._supervisor is not None:
            tasks.append(self._supervisor)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._finish()
        self._state = "closed"

    async def start(self) -> None:
        """Open the output, check the input and start the workers (done by the first
        ``__anext__`` or ``async with``; errors in the input or the output file raise here,
        before any request)."""
        async with self._start_lock:
            if self._state != "new":
                return
            self._state = "starting"
            try:
                await self._open()
            except BaseException:
                self._state = "closed"
                if self._out is not None:
                    self._out.close()
                raise
            loop = asyncio.get_running_loop()
            self.stats.started = time.monotonic()
            self._workers = [
                loop.create_task(self._work(), name=f"rxllm:batch-{i}")
                for i in range(self._concurrency)
            ]
            self._supervisor = loop.create_task(self._supervise(), name="rxllm:batch")
            if self._out is not None and self._fsync == "interval":
                self._syncer = loop.create_task(self._sync_every(), name="rxllm:batch-fsync")
            self._state = "running"

    async def _open(self) -> None:
        try:
            await self._open_files()
        except OSError as exc:  # a missing folder, no permission: a usage error
            raise ConfigError(f"{exc.filename or 'file'}: {exc.strerror or exc}") from None
        self._wrap_providers()

    async def _open_files(self) -> None:
        if self.output_path is not None:
            path = self.output_path
            self._out = await asyncio.to_thread(
                OutputFile.open, path, fsync=self._fsync, retry_failed=self._retry_failed
            )
        done = self._out.done if self._out is not None else {}
        rows = self._rows
        if isinstance(rows, str | os.PathLike):
            path = Path(rows)
            if not path.is_file():
                raise ConfigError(f"{path}: no such input file")
            total, skip = await asyncio.to_thread(_scan_file, path, self._id_field, done)
            self.stats.total = total
            self.stats.skipped = skip
            self._source = _file_rows(path, self._id_field)
        elif isinstance(rows, AsyncIterable):
            self._async_source = _alazy_rows(rows, self._id_field)
            self._seen = set()
        elif isinstance(rows, Sequence):
            checked = _check_sequence(cast("Sequence[Mapping[str, Any]]", rows), self._id_field)
            self.stats.total = len(checked)
            self.stats.skipped = sum(1 for _, key, _ in checked if key in done)
            self._source = ((rid, row) for rid, _, row in checked)
        elif isinstance(rows, Iterable):
            self._source = _lazy_rows(rows, self._id_field)
            self._seen = set()
        else:
            raise ConfigError("rows is a path or an iterable of mappings")

    def _wrap_providers(self) -> None:
        rate = self._rate
        if rate is None:
            return
        providers = list(self.pipeline.providers.items())
        if isinstance(rate, Mapping):  # the pipeline's own keys may name providers too
            by_name = dict(rate)
            for key, provider in providers:
                if key in rate and provider.name not in rate:
                    by_name[provider.name] = rate[key]
            rate = by_name
        self.limiters = limiters_for((p.name for _, p in providers), rate)
        if not self.limiters:
            return
        limiters = self.limiters

        def wrap(provider: Provider) -> Any:
            limiter = limiters.get(provider.name)
            return provider if limiter is None else LimitedProvider(provider, limiter)

        self._running = self.pipeline.with_providers(wrap)
        if providers:
            self._primary = limiters.get(providers[0][1].name)

    # --- workers ---------------------------------------------------------------------------

    async def _supervise(self) -> None:
        try:
            results = await asyncio.gather(*self._workers, return_exceptions=True)
            for outcome in results:
                if isinstance(outcome, BaseException) and not isinstance(
                    outcome, asyncio.CancelledError
                ):
                    self._error = self._error or outcome
        finally:
            self.stats.finished = time.monotonic()
            await self._queue.put(_END)

    async def _work(self) -> None:
        try:
            while not self._stopping:
                item = await self._next_row()
                if item is None:
                    return
                rid, row = item
                result = await self._process(rid, row)
                if result is None:  # stopped before its first request
                    return
                self._record(result)
                if self._out is not None:
                    await self._out.after_write()
                await self._queue.put(result)
        except asyncio.CancelledError:
            if not self._cancelling:
                raise
        except BaseException as exc:  # a broken input or output: the batch cannot go on
            self._error = self._error or exc
            if isinstance(exc, ConfigError):
                self.stop()  # rows already running finish; then the error is raised
            else:
                self.cancel()
            if not isinstance(exc, Exception):
                raise

    async def _next_row(self) -> tuple[RowId, Mapping[str, Any]] | None:
        done = self._out.done if self._out is not None else None
        while not self._stopping:
            if self._async_source is not None:
                async with self._pull_lock:
                    if self.stopping or self._async_source is None:
                        return None
                    try:
                        rid, row = await anext(self._async_source)
                    except StopAsyncIteration:
                        self._async_source = None
                        return None
            else:
                if self._source is None:
                    return None
                try:
                    rid, row = next(self._source)
                except StopIteration:
                    self._source = None
                    return None
            key = id_key(rid)
            if self._seen is not None:
                if key in self._seen:
                    raise ConfigError(f"id {key.decode()} appears twice in the rows")
                self._seen.add(key)
                if done is not None and key in done:
                    self.stats.skipped += 1
                    continue
            elif done is not None and key in done:
                continue  # counted when the input was checked
            return rid, row
        return None

    async def _process(self, rid: RowId, row: Mapping[str, Any]) -> RowResult | None:
        """Run the pipeline for one row; ``None`` if stopped before its first request."""
        stats = self.stats
        attempts: list[RowAttempt] = []
        usages: list[Usage | None] = []  # each attempt's usage, as reported at its end
        kind = self._kind
        parts: list[Any] = []
        acc = Accumulator() if kind == "events" else None

        def on_start(info: RequestStartInfo) -> None:
            stats.requests += 1

        def on_end(info: RequestEndInfo) -> None:
            usage = info.usage
            usages.append(usage)
            attempts.append(
                RowAttempt(
                    provider=info.provider,
                    attempt=info.attempt,
                    outcome=info.outcome,
                    status=info.status,
                    seconds=info.duration,
                    input_tokens=usage.input_tokens if usage else None,
                    output_tokens=usage.output_tokens if usage else None,
                )
            )
            if usage is not None:
                stats.input_tokens += usage.input_tokens or 0
                stats.output_tokens += usage.output_tokens or 0
            if info.status == 429:
                stats.throttled += 1

        def on_retry(info: RetryInfo) -> None:
            stats.retries += 1

        def on_fallback(info: FallbackInfo) -> None:
            stats.fallbacks += 1

        hooks = Hooks(
            on_request_start=on_start,
            on_request_end=on_end,
            on_retry=on_retry,
            on_fallback=on_fallback,
        )
        t0 = time.monotonic()
        error: BaseException | None = None
        stats.running += 1
        try:
            try:
                source = self._running.stream(row, hooks=hooks)
            except Exception as exc:  # noqa: BLE001 - a row the pipeline cannot take
                error = exc
            else:
                grant = None
                primary = self._primary
                if primary is not None:
                    grant = await self._first_grant(primary, row)
                    if grant is None:
                        return None
                error = await self._subscribe(source, grant, parts, acc)
        except asyncio.CancelledError:
            if self._cancelling:
                stats.cancelled += 1
            raise
        finally:
            stats.running -= 1
        return self._result(rid, kind, parts, acc, attempts, usages, error, t0)

    async def _first_grant(self, limiter: Limiter, row: Mapping[str, Any]) -> Grant | None:
        """Wait for the primary provider's grant before the row's chain starts; ``None``
        if the batch was stopped meanwhile."""
        grant = limiter.try_acquire(limiter.estimate(None, _row_chars(row)))
        if grant is not None:
            return grant
        if self._stopping:
            return None
        task = asyncio.get_running_loop().create_task(
            limiter.acquire(limiter.estimate(None, _row_chars(row)))
        )
        self._acquiring.add(task)
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self.stopping and task.cancelled() and not (current and current.cancelling()):
                return None
            raise
        finally:
            self._acquiring.discard(task)

    async def _subscribe(
        self,
        source: Observable[Any],
        grant: Grant | None,
        parts: list[Any],
        acc: Accumulator | None,
    ) -> BaseException | None:
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[BaseException | None] = loop.create_future()
        stats = self.stats
        if acc is not None:
            on_next: Callable[[Any], None] = acc.add
        elif self._kind == "items":

            def on_next(item: Any) -> None:
                parts.append(item)
                stats.items += 1

        else:
            on_next = parts.append

        def on_error(error: Exception) -> None:
            if not finished.done():
                finished.set_result(error)

        def on_completed() -> None:
            if not finished.done():
                finished.set_result(None)

        scope = (
            prepaid_scope(self._primary, grant)
            if grant is not None and self._primary is not None
            else contextlib.nullcontext()
        )
        with scope:
            subscription = source.subscribe(on_next, on_error, on_completed)
        try:
            return await finished
        finally:
            subscription.dispose()

    def _result(
        self,
        rid: RowId,
        kind: OutputKind,
        parts: list[Any],
        acc: Accumulator | None,
        attempts: list[RowAttempt],
        usages: list[Usage | None],
        error: BaseException | None,
        t0: float,
    ) -> RowResult:
        output: Any
        if kind == "text":
            output = "".join(p if isinstance(p, str) else _text_of(p) for p in parts)
        elif kind == "items":
            output = parts
        else:
            assert acc is not None
            output = acc.response().to_dict()
            for duplicate in ("usage", "provider"):
                output.pop(duplicate, None)
        # The attempt that answered (the last one: a chain stops at its first success), or
        # for a failed row the last one tried.
        provider = attempts[-1].provider if attempts else None
        usage = usages[-1] if usages else None
        status = getattr(error, "status", None)
        return RowResult(
            id=rid,
            ok=error is None,
            kind=kind,
            output=output,
            usage=usage,
            provider=provider,
            attempts=tuple(attempts),
            error=None if error is None else error_kind(error),
            message=None if error is None else redact(str(error)),
            status=status if isinstance(status, int) else None,
            seconds=time.monotonic() - t0,
        )

    def _record(self, result: RowResult) -> None:
        if self._out is not None:
            self._out.write(result.to_json())
        if result.ok:
            self.stats.ok += 1
        else:
            self.stats.failed += 1
            self.stats.failed_kinds[result.error or "error"] += 1

    async def _sync_every(self) -> None:
        out = self._out
        assert out is not None
        while True:
            await asyncio.sleep(self._fsync_interval)
            await out.sync()

    async def _finish(self) -> None:
        if self._state in ("ended", "closed"):
            return
        self._state = "ended"
        if self.stats.finished is None and self.stats.started:
            self.stats.finished = time.monotonic()
        if self._syncer is not None:
            self._syncer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._syncer
        if self._out is not None:
            await self._out.aclose()


# --- input helpers ------------------------------------------------------------------------


def _scan_file(path: Path, id_field: str, done: Mapping[bytes, str]) -> tuple[int, int]:
    total = scan_rows(path, id_field)
    if not done:
        return total, 0
    skip = 0
    for number, line in iter_jsonl(path):
        key = id_key(row_id(parse_row(path, number, line), id_field, f"{path}:{number}"))
        if key in done:
            skip += 1
    return total, skip


def _file_rows(path: Path, id_field: str) -> Iterator[tuple[RowId, Mapping[str, Any]]]:
    for number, line in iter_jsonl(path):
        row = parse_row(path, number, line)
        yield row_id(row, id_field, f"{path}:{number}"), row


def _check_sequence(
    rows: Sequence[Mapping[str, Any]], id_field: str
) -> list[tuple[RowId, bytes, Mapping[str, Any]]]:
    out: list[tuple[RowId, bytes, Mapping[str, Any]]] = []
    seen: set[bytes] = set()
    for index, row in enumerate(rows):
        rid = row_id(row, id_field, f"row {index}")
        key = id_key(rid)
        if key in seen:
            raise ConfigError(f"row {index}: id {key.decode()} appears twice")
        seen.add(key)
        out.append((rid, key, row))
    return out


def _lazy_rows(
    rows: Iterable[Mapping[str, Any]], id_field: str
) -> Iterator[tuple[RowId, Mapping[str, Any]]]:
    for index, row in enumerate(rows):
        yield row_id(row, id_field, f"row {index}"), row


async def _alazy_rows(
    rows: AsyncIterable[Mapping[str, Any]], id_field: str
) -> AsyncIterator[tuple[RowId, Mapping[str, Any]]]:
    index = 0
    async for row in rows:
        yield row_id(row, id_field, f"row {index}"), row
        index += 1


def _row_chars(row: Mapping[str, Any]) -> int:
    return sum(len(v) if isinstance(v, str) else 8 for v in row.values())


def _text_of(part: Any) -> str:
    if isinstance(part, TextDelta):
        return part.text
    return str(part)
