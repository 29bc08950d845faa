"""The ``rxllm`` command line (also ``python -m rxllm``).

Commands: ``demo`` (streams from every simulated provider: no key, no network) and ``sim``
(serves the provider simulator).

Exit codes: 0 success, 1 a provider or stream failure, 2 a usage or spec error,
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

__all__ = ["EXIT_BAD_SPEC", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_PROVIDER", "main"]

EXIT_OK = 0
EXIT_PROVIDER = 1
EXIT_BAD_SPEC = 2
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
    return parser


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
        if args.command == "sim":
            from rxllm.sim import main as sim_main

            sim_args = ["--host", args.host, "--port", str(args.port)]
            if args.scenarios:
                sim_args += ["--scenarios", args.scenarios]
            return sim_main(sim_args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    parser.error(f"unknown command {args.command!r}")
    return EXIT_BAD_SPEC  # pragma: no cover - parser.error exits


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
