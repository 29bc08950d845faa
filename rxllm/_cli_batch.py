"""``rxllm batch SPEC --input rows.jsonl --output out.jsonl``: a pipeline over a file of rows.

Resumable (rerun the same command after a crash or a Ctrl-C), rate-limited per provider,
with a progress line on a terminal and a final summary. Exit codes (``rxllm.cli``):

* ``EXIT_OK`` (0): every row is done and none failed (rows done by an earlier run count);
* ``EXIT_PROVIDER`` (1): the batch ran to the end but some rows failed (they are in the
  output with their error), or the batch broke (the output file could not be written);
* ``EXIT_BAD_SPEC`` (2): bad arguments, spec, input rows (a missing or repeated id) or an
  output file that is not a batch's (or is in use); nothing was sent;
* ``EXIT_INTERRUPTED`` (130): stopped by Ctrl-C (or SIGTERM); the output is resumable.

The first Ctrl-C (or a SIGTERM) takes no new rows and lets running rows finish; a second
Ctrl-C cancels them (they are not written, and a rerun does them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from .batch import DEFAULT_CONCURRENCY, Batch, Pipeline, RateLimit, run
from .cli import EXIT_BAD_SPEC, EXIT_INTERRUPTED, EXIT_OK, EXIT_PROVIDER
from .errors import ConfigError, RxllmError, SpecError

__all__ = ["add_parser", "load_pipeline", "main", "parse_limits"]

_MODULE_ATTR = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

_EPILOG = """\
exit codes: 0 every row done, 1 some rows failed (see the output), 2 bad spec, input or
usage (nothing sent), 130 interrupted (Ctrl-C or SIGTERM; rerun to resume)"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register the ``batch`` subcommand on ``sub`` (the CLI's subparsers)."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "batch",
        help="run a pipeline over a file of rows (resumable, rate-limited)",
        description=(
            "Run a pipeline over JSON lines, one output line per row id. Rerun the same "
            "command to resume: rows already in the output are skipped. Ctrl-C once stops "
            "taking rows and lets running ones finish; twice cancels them."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "spec",
        metavar="SPEC",
        help="a pipeline spec file, or module:attribute naming a Pipeline (or a function "
        "returning one) in Python",
    )
    parser.add_argument(
        "--input", "-i", required=True, metavar="ROWS", help="JSON lines, each with an id"
    )
    parser.add_argument(
        "--output", "-o", required=True, metavar="OUT", help="JSON lines written and resumed"
    )
    parser.add_argument(
        "--concurrency",
        "-c",
        type=_positive_int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"rows in flight at once (default {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument(
        "--rps",
        action="append",
        default=[],
        metavar="[PROVIDER=]R",
        help="requests per second per provider (repeat with PROVIDER= for one provider)",
    )
    parser.add_argument(
        "--tpm",
        action="append",
        default=[],
        metavar="[PROVIDER=]T",
        help="tokens per minute per provider (repeat with PROVIDER= for one provider)",
    )
    parser.add_argument("--id-field", default="id", help="the field holding row ids (id)")
    parser.add_argument(
        "--retry-failed", action="store_true", help="run rows recorded as failed again"
    )
    parser.add_argument(
        "--fsync",
        choices=("always", "interval", "never"),
        default="interval",
        help="when the output reaches the disk (default: every second and at the end)",
    )
    parser.add_argument(
        "--sim",
        action="store_true",
        help="answer from a built-in provider simulator (no API key, no network)",
    )
    parser.add_argument(
        "--summary", action="store_true", help="print the final summary as JSON on stdout"
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress line, even on a terminal"
    )
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_limits(rps: list[str], tpm: list[str]) -> dict[str, RateLimit] | None:
    """``--rps``/``--tpm`` values (``R`` or ``PROVIDER=R``) as ``run``'s ``rate`` mapping
    (``"*"``: every provider not named)."""
    values: dict[str, dict[str, float]] = {}
    for option, items in (("rps", rps), ("tpm", tpm)):
        for item in items:
            name, sep, number = item.rpartition("=")
            key = name if sep else "*"
            if sep and not name:
                raise ConfigError(f"--{option} {item!r}: the provider name is empty")
            try:
                value = float(number)
            except ValueError:
                raise ConfigError(f"--{option} {item!r}: not a number") from None
            values.setdefault(key, {})[option] = value
    if not values:
        return None
    default = values.get("*", {})
    return {name: RateLimit(**{**default, **given}) for name, given in values.items()}


def load_pipeline(spec: str) -> Pipeline:
    """A spec file through ``rxllm.pipeline.load``, or ``module:attribute`` imported (a
    ``Pipeline`` or a function of no arguments returning one)."""
    path = Path(spec)
    if path.is_file():
        try:
            from rxllm import pipeline as pipeline_module
        except ImportError as exc:
            raise ConfigError(f"reading spec files needs rxllm.pipeline: {exc}") from None
        loaded: Pipeline = pipeline_module.load(path)
        return loaded
    if not _MODULE_ATTR.match(spec):
        raise ConfigError(f"{spec}: no such spec file (or module:attribute)")
    module_name, _, attr = spec.partition(":")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, "")  # like python -m: modules next to the caller are found
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{spec}: cannot import {module_name}: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{spec}: {module_name} has no attribute {attr}") from None
    if not isinstance(obj, Pipeline) and callable(obj):
        obj = obj()
    if not isinstance(obj, Pipeline):
        raise ConfigError(f"{spec}: not a Pipeline (nor a function returning one)")
    return obj


def main(args: argparse.Namespace) -> int:
    """Run ``rxllm batch`` with parsed ``args``; returns the exit code."""
    try:
        rate = parse_limits(args.rps, args.tpm)
        pipeline = load_pipeline(args.spec)
    except (ConfigError, SpecError, OSError) as exc:
        print(f"rxllm batch: {exc}", file=sys.stderr)
        return EXIT_BAD_SPEC
    return asyncio.run(_run(args, pipeline, rate))


@contextlib.asynccontextmanager
async def _simulated(pipeline: Pipeline, on: bool) -> AsyncIterator[Pipeline]:
    if not on:
        yield pipeline
        return
    from rxllm.sim import Scenario, serve

    default = Scenario(json_items=3) if pipeline.output == "items" else Scenario()
    async with serve(default=default) as sim:
        with_simulator = getattr(pipeline, "with_simulator", None)
        if callable(with_simulator):  # rxllm.pipeline: the spec's own sim scenarios too
            yield with_simulator(sim)
            return

        def base_url(provider: Any) -> str:
            dialect = getattr(getattr(provider, "dialect", None), "name", "openai")
            return sim.base_url(dialect)

        yield pipeline.with_base_urls(base_url)


async def _run(args: argparse.Namespace, pipeline: Pipeline, rate: Any) -> int:
    import rxllm

    stderr = sys.stderr
    show = not args.no_progress and stderr.isatty()
    interrupts = 0
    try:
        async with _simulated(pipeline, args.sim) as pipe:
            batch = run(
                pipe,
                args.input,
                output=args.output,
                concurrency=args.concurrency,
                rate=rate,
                id_field=args.id_field,
                retry_failed=args.retry_failed,
                fsync=args.fsync,
            )
            bar = None
            if show:
                from ._batch_progress import ProgressBar

                bar = ProgressBar(batch.stats, stderr, items=pipe.output == "items")

            def interrupted(signum: int) -> None:
                nonlocal interrupts
                interrupts += 1
                if bar is not None:
                    bar.clear()
                if interrupts == 1 or signum != signal.SIGINT:
                    batch.stop()
                    print(
                        f"\nrxllm batch: stopping; {batch.stats.running} running rows finish "
                        "(Ctrl-C again cancels them)",
                        file=stderr,
                    )
                else:
                    batch.cancel()
                    print("\nrxllm batch: cancelling the running rows", file=stderr)

            with _signals(interrupted):
                try:
                    await _drive(batch, bar)
                except ConfigError as exc:
                    print(f"rxllm batch: {exc}", file=stderr)
                    return EXIT_BAD_SPEC
                except (RxllmError, OSError) as exc:
                    print(f"rxllm batch: {exc}", file=stderr)
                    return EXIT_PROVIDER
    finally:
        await rxllm.aclose()
    summary = batch.summary()
    from ._batch_progress import format_summary

    print(format_summary(summary), file=stderr)
    if args.summary:
        sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
        sys.stdout.flush()
    if interrupts:
        return EXIT_INTERRUPTED
    return EXIT_PROVIDER if batch.stats.failed else EXIT_OK


async def _drive(batch: Batch, bar: Any) -> None:
    async with batch:
        task = asyncio.get_running_loop().create_task(bar.run()) if bar is not None else None
        try:
            async for _ in batch:
                pass
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


@contextlib.contextmanager
def _signals(handler: Callable[[int], None]) -> Iterator[None]:
    """Route SIGINT and SIGTERM to ``handler(signum)`` while the batch runs (where the loop
    supports signal handlers)."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, handler, int(sig))
        except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover
            continue
        installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
