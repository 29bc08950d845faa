"""``rxllm run SPEC``: run a pipeline spec on one input and stream the result to stdout.

Text arrives on stdout as the model writes it (flushed per delta); items and events as JSON
lines, one per item the moment it is complete. Diagnostics (fallbacks, retries, validation
reports, a summary, the error) go to stderr, so stdout stays machine-readable. ``--sim``
runs the spec against the built-in provider simulator with the spec's ``sim`` scenarios:
no key, no network.

Exit codes (``rxllm.cli``): 0 success; 1 a provider or stream failure (every provider
failed, a stream interrupted after its first token, JSON the model broke); 2 a bad spec or
usage (including a row the prompt template cannot be filled from); 3 a validation halt
(``validate`` with ``on_invalid: halt``); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import orjson

from .aio import to_aiter
from .chain import FallbackInfo, Hooks, RetryInfo
from .cli import EXIT_BAD_SPEC, EXIT_INTERRUPTED, EXIT_OK, EXIT_PROVIDER, EXIT_VALIDATION
from .errors import ConfigError, RxllmError, SpecError, ValidationHalted, error_kind
from .events import Event, Started
from .operators import ValidationReport
from .pipeline import Output, Pipeline, load
from .schema import event_to_json
from .transport import aclose

__all__ = ["add_parser", "main"]

_EPILOG = """\
exit codes: 0 success, 1 provider or stream failure, 2 bad spec or usage,
3 validation halt, 130 interrupted (Ctrl-C)"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register the ``run`` subcommand."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="run a pipeline spec (YAML or JSON) on one input",
        description=(
            "Run a pipeline spec on one input row. Text is streamed to stdout as it "
            "arrives; items and events as JSON lines. Diagnostics go to stderr."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("spec", help="the pipeline spec: a .yaml/.yml or .json file")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--input", metavar="TEXT", help="the input text (fills the template's one field)"
    )
    source.add_argument(
        "--input-file",
        metavar="PATH",
        help="a text file (its whole text is the input) or a JSON object (its fields fill "
        "the template); - reads stdin",
    )
    parser.add_argument(
        "--sim",
        action="store_true",
        help="answer from the built-in provider simulator with the spec's sim scenarios "
        "(no key, no network)",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no diagnostics on stderr except errors"
    )
    return parser


def main(args: argparse.Namespace) -> int:
    """Run the command; returns the exit code."""
    err: TextIO = sys.stderr
    try:
        pipeline = load(args.spec)
        row = _row(args, pipeline)
    except (SpecError, _InputError) as exc:
        print(f"rxllm run: {exc}", file=err)
        return EXIT_BAD_SPEC
    try:
        return asyncio.run(
            run(pipeline, row, sim=args.sim, quiet=args.quiet, out=sys.stdout, err=err)
        )
    except KeyboardInterrupt:
        print("rxllm run: interrupted", file=err)
        return EXIT_INTERRUPTED


class _InputError(Exception):
    """The input the command line names cannot be read or used."""


def _row(args: argparse.Namespace, pipeline: Pipeline) -> Mapping[str, Any] | str:
    if args.input is not None:
        text: str = args.input
        return text
    if args.input_file is not None:
        return _read_input(args.input_file)
    if pipeline.default_input is not None:
        return pipeline.default_input
    if pipeline.fields:
        names = ", ".join("{" + f + "}" for f in pipeline.fields)
        raise _InputError(
            f"the prompt needs {names}: give --input TEXT or --input-file PATH "
            "(or an input row in the spec)"
        )
    return {}


def _read_input(name: str) -> Mapping[str, Any] | str:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _InputError(f"cannot read the input file {name}: {exc}") from None
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            value = json.loads(stripped)
        except ValueError:
            return text  # text that happens to start with a brace
        if isinstance(value, dict):
            return value
    return text


async def run(
    pipeline: Pipeline,
    row: Mapping[str, Any] | str,
    *,
    sim: bool = False,
    quiet: bool = False,
    out: TextIO,
    err: TextIO,
) -> int:
    """Stream ``pipeline`` for ``row`` to ``out`` (diagnostics to ``err``); the exit code."""
    async with contextlib.AsyncExitStack() as stack:
        if sim:
            try:
                pipeline = await _simulated(pipeline, stack)
            except ConfigError as exc:
                print(f"rxllm run: {exc}", file=err)
                return EXIT_BAD_SPEC
        stack.push_async_callback(aclose)  # runs before the simulator stops
        writer = _Writer(pipeline.output, out)
        diag = _Diagnostics(err, quiet)
        stream = pipeline.stream(
            row, hooks=diag.hooks(), on_event=diag.on_event, on_report=diag.on_report
        )
        try:
            async for item in to_aiter(stream):
                writer.write(item)
        except BrokenPipeError:
            _silence_stdout()
            return EXIT_OK  # the reader (head, a pager) has had enough
        except ValidationHalted as exc:
            writer.finish()
            where = "; ".join(f"{p or '/'}: {m}" for p, m in exc.errors[:3])
            print(f"rxllm run: validation halted at item {exc.index}: {where}", file=err)
            return EXIT_VALIDATION
        except (SpecError, ConfigError) as exc:
            writer.finish()
            print(f"rxllm run: {exc}", file=err)
            return EXIT_BAD_SPEC
        except (RxllmError, OSError, TimeoutError) as exc:
            writer.finish()
            print(f"rxllm run: {error_kind(exc)}: {exc}", file=err)
            return EXIT_PROVIDER
        writer.finish()
        diag.summary(writer)
        return EXIT_OK
    raise AssertionError("unreachable")  # pragma: no cover - the stack re-raises or returns


async def _simulated(pipeline: Pipeline, stack: contextlib.AsyncExitStack) -> Pipeline:
    """Start the simulator for the ``async with`` and point the pipeline at it."""
    from rxllm.sim import Scenario, serve

    for key, fields in pipeline.sim_scenarios.items():
        try:
            Scenario.from_mapping(fields)
        except ConfigError as exc:
            raise ConfigError(f"the spec's sim.{key}: {exc}") from None
    simulator = await stack.enter_async_context(serve())
    return pipeline.with_simulator(simulator)


def _silence_stdout() -> None:
    # Python would complain again when it flushes stdout at exit.
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


class _Writer:
    """Writes each output the moment it arrives: text as is, the rest as JSON lines."""

    def __init__(self, output: Output, out: TextIO) -> None:
        self.output = output
        self.out = out
        self.count = 0
        self.chars = 0
        self.last = "\n"

    def write(self, item: Any) -> None:
        out = self.out
        if self.output == "text" and isinstance(item, str):
            out.write(item)
            self.chars += len(item)
            if item:
                self.last = item[-1]
        else:
            out.write(orjson.dumps(item, default=_json, option=_OPTIONS).decode() + "\n")
            self.last = "\n"
        self.count += 1
        out.flush()

    def finish(self) -> None:
        """End text output with a newline."""
        if self.last != "\n":
            self.out.write("\n")
            self.last = "\n"
        with contextlib.suppress(OSError):
            self.out.flush()


_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_NON_STR_KEYS


def _json(value: Any) -> Any:
    try:
        return event_to_json(value)
    except TypeError:
        pass
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    return str(value)


class _Diagnostics:
    """What the user sees on stderr: fallbacks, retries, validation reports, a summary."""

    def __init__(self, err: TextIO, quiet: bool) -> None:
        self.err = err
        self.quiet = quiet
        self.provider: str | None = None
        self.counts: dict[str, int] = {}

    def say(self, message: str) -> None:
        if not self.quiet:
            print(f"rxllm run: {message}", file=self.err, flush=True)

    def hooks(self) -> Hooks:
        def on_fallback(info: FallbackInfo) -> None:
            status = getattr(info.error, "status", None)
            why = f"{info.reason} {status}" if isinstance(status, int) else info.reason
            self.say(
                f"{info.from_provider} failed before its first token ({why}); "
                f"falling over to {info.to_provider}"
            )

        def on_retry(info: RetryInfo) -> None:
            self.say(
                f"{info.provider} failed ({error_kind(info.error)}); "
                f"try {info.attempt} in {info.wait:.2f} s"
            )

        return Hooks(on_fallback=on_fallback, on_retry=on_retry)

    def on_event(self, event: Event) -> None:
        if isinstance(event, Started):
            self.provider = event.provider

    def on_report(self, report: ValidationReport) -> None:
        self.counts[report.action] = self.counts.get(report.action, 0) + 1
        if report.action in ("skipped", "patched"):
            first = report.errors[0] if report.errors else ("", "")
            more = f" (+{len(report.errors) - 1} more)" if len(report.errors) > 1 else ""
            self.say(f"item {report.index} {report.action}: {first[0] or '/'}: {first[1]}{more}")

    def summary(self, writer: _Writer) -> None:
        if writer.output == "text":
            what = f"{writer.chars} characters"
        else:
            what = f"{writer.count} {'item' if writer.output == 'items' else 'event'}"
            what += "" if writer.count == 1 else "s"
        source = f" from {self.provider}" if self.provider else ""
        checked = ""
        if self.counts:
            parts = [
                f"{self.counts[a]} {a}" for a in ("valid", "patched", "skipped") if a in self.counts
            ]
            checked = f"; validation: {', '.join(parts)}"
        self.say(f"done: {what}{source}{checked}")
