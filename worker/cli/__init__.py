"""The fitboard command line: one module per command group, each adding its own subcommands."""
from __future__ import annotations

import argparse
import sys

from fitboard.app.core.redact import install_log_redaction
from fitboard.text import SafeOutput
from fitboard.worker.cli import doctor, predict, search, serve, store, submit, train, weights


def build_parser() -> argparse.ArgumentParser:
    """All subcommands and their options."""
    parser = argparse.ArgumentParser(prog="fitboard", description="Launch and compare fastai training runs.")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (train, serve, submit, search, store, doctor, predict, weights):
        group.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the fitboard console script."""
    args = build_parser().parse_args(argv)
    install_log_redaction()  # web, worker and predictor log lines never show a credential
    # Names, errors and labels come from a server or a database: a terminal never gets their ESC, CR or U+202E.
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = SafeOutput(out), SafeOutput(err, keep="\n\t\r")  # \r: our own progress lines
    try:
        return args.func(args)
    finally:
        sys.stdout, sys.stderr = out, err
