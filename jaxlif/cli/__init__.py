"""The ``jaxlif`` command line.

Usage::

    jaxlif fit-stp --rates 5 10 20 40 --ratios 0.61 0.45 0.33 0.27 [--mode tutorial] [--json]
    jaxlif fit-stp --csv curve.csv --out fit.png

Each subcommand lives in its own module ``jaxlif/cli/<name>.py`` with one
``add_<name>(subparsers)`` function that builds its parser and sets ``func`` to a handler
``handler(args) -> int``; :data:`SUBCOMMANDS` lists them, so adding a command is one module plus
one entry.  Bad input (``ValueError``/``TypeError`` from the library's
validators, unreadable files) ends with exit status 2 and a one-line message, as argparse does.
"""

from __future__ import annotations

import argparse
import sys

from jaxlif.cli._common import json_safe
from jaxlif.cli.fit_stp import add_fit_stp, read_curve_csv

__all__ = ["main", "build_parser", "SUBCOMMANDS", "read_curve_csv", "json_safe"]

#: Functions adding one subcommand each to the ``jaxlif`` parser.
SUBCOMMANDS = [add_fit_stp]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxlif",
        description="jaxlif: LIF neurons, conductance synapses and short-term plasticity in JAX.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv=None) -> int:
    """Run ``jaxlif`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Bad input exits with status 2 (``SystemExit``) and a message naming the problem.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError) as err:
        parser.exit(2, f"jaxlif {args.command}: error: {err}\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
