"""``rxllm run``: placeholder until the command lands."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser", "main"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register the ``run`` subcommand."""
    parser: argparse.ArgumentParser = sub.add_parser("run", help="(not available yet)")
    return parser


def main(args: argparse.Namespace) -> int:
    """Run the command."""
    print("rxllm run is not available yet")
    return 2
