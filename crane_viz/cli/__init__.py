"""The `crane-viz` command: one subcommand per module, each with `add_parser(subparsers)`."""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..device import keep_freed_memory
from . import evaluate, export, generate, jobs, learning_curve, phase_diagram, run, serve, simulate, stability, train
from .common import run_guarded

SUBCOMMANDS = [serve, simulate, run, generate, train, jobs, evaluate, learning_curve, stability, phase_diagram, export]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crane-viz", description="Cahn–Hilliard phase-field "
                                     "evolution and its CRNN surrogate.")
    parser.add_argument("--version", action="version", version=f"crane-viz {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    return run_guarded(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
