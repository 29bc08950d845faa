"""The ``rxllm`` command line (also ``python -m rxllm``).

Commands: ``demo`` (streams from every simulated provider: no key, no network), ``sim``
(serves the provider simulator), ``run`` (one pipeline spec) and ``batch`` (a pipeline over
a file of rows).

Exit codes: 0 success, 1 a provider or stream failure, 2 a usage or spec error,
3 a validation halt, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Sequence

__all__ = [
    "EXIT_BAD_SPEC",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PROVIDER",
    "EXIT_VALIDATION",
    "main",
]

EXIT_OK = 0
EXIT_PROVIDER = 1
EXIT_BAD_SPEC = 2
EXIT_VALIDATION = 3
EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rxllm",
        description="Reactive stream processing for LLM provider streams.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo", help="stream from every simulated provider (no API key, no network)"
    )
    demo.add_argument("--tokens", type=int, default=40, help="tokens per answer (default 40)")
    demo.add_argument(
        "--tps", type=float, default=150.0, help="simulated tokens per second (default 150)"
    )
    demo.add_argument("--no-color", action="store_true", help="plain output")

    sim = sub.add_parser("sim", help="serve the provider simulator on loopback")
    sim.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sim.add_argument("--port", type=int, default=8900, help="port (default 8900)")
    sim.add_argument("--scenarios", help="a JSON or YAML file of scenarios by model name")

    # Commands implemented in their own modules: each has add_parser(sub) and main(args).
    for module in _COMMAND_MODULES.values():
        importlib.import_module(module, __package__).add_parser(sub)
    return parser


_COMMAND_MODULES = {"run": "._cli_run", "batch": "._cli_batch"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_SPEC
    try:
        if args.command == "demo":
            from ._demo import run_demo

            return asyncio.run(run_demo(tokens=args.tokens, tps=args.tps, color=not args.no_color))
        if args.command in _COMMAND_MODULES:
            command = importlib.import_module(_COMMAND_MODULES[args.command], __package__)
            code: int = command.main(args)
            return code
        if args.command == "sim":
            from rxllm.sim import main as sim_main

            sim_args = ["--host", args.host, "--port", str(args.port)]
            if args.scenarios:
                sim_args += ["--scenarios", args.scenarios]
            return sim_main(sim_args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    parser.error(f"unknown command {args.command!r}")  # exits with status 2
    raise AssertionError("unreachable")  # pragma: no cover - parser.error exits


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
