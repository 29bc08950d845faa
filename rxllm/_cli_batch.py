"""``rxllm batch``: placeholder until the command lands."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser", "main"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register the ``batch`` subcommand."""
    parser: argparse.ArgumentParser = sub.add_parser("batch", help="(not available yet)")
    return parser


def main(args: argparse.Namespace) -> int:
    """Run the command."""
    print("rxllm batch is not available yet")
    return 2
