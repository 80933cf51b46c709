"""The fitboard command line: one module per command group, each adding its own subcommands.

The client groups (submit, follow, search, predict, runs, show, retry, cancel, edit, delete) talk HTTP through
fitboard.Client and work from a light `pip install fitboard`. The others need the server's packages or the training
ones: where those are missing, their commands are still listed and say which extra to install instead of failing
with a traceback."""
from __future__ import annotations

import argparse
import importlib
import sys

from fitboard.app.core.redact import install_log_redaction
from fitboard.text import SafeOutput
from fitboard.worker.cli import manage, predict, search, submit
from fitboard.worker.cli.common import EXIT_FAILED, warn

CLIENT_GROUPS = (submit, manage, search, predict)
# The groups that need more than the client, with the commands each adds and the extra each command needs.
SERVER_GROUPS = {
    "train": {"train": "train", "demo-data": "server"},
    "serve": {"worker": "train", "predictor": "train", "up": "train", "web": "server"},
    "store": {"db": "server", "enqueue": "server"},
    "doctor": {"doctor": "server"},
    "weights": {"weights": "train"},
    "people": {"users": "server", "projects": "server", "tokens": "server"},
}
# The packages each extra brings that a command may miss (the top-level import name).
EXTRA_OF = {**dict.fromkeys(("torch", "torchvision", "fastai", "sklearn"), "train"),
            **dict.fromkeys(("fastapi", "uvicorn", "sqlmodel", "sqlalchemy", "alembic", "celery", "kombu", "redis",
                             "optuna", "psycopg2", "jinja2", "starlette", "PIL", "pydantic", "pydantic_settings",
                             "tenacity", "plotly", "fastapi_offline", "multipart", "itsdangerous"), "server")}


def needs_extra(exc: ModuleNotFoundError) -> str | None:
    """The extra that brings the missing package (None when it is not one of fitboard's own dependencies)."""
    return EXTRA_OF.get((exc.name or "").split(".")[0])


def third_party(exc: ModuleNotFoundError) -> bool:
    """Whether the missing module is another distribution's (fitboard's own missing would be a bug to show)."""
    return bool(exc.name) and exc.name.split(".")[0] != "fitboard"


def _missing(command: str, extra: str, package: str):
    """A command whose packages are not installed: it says which extra brings them."""
    def run(args) -> int:
        warn(f"fitboard {command} needs {package}, which this install lacks: pip install 'fitboard[{extra}]'")
        return EXIT_FAILED
    return run


def build_parser(server: bool = True) -> argparse.ArgumentParser:
    """All subcommands and their options (placeholders for the ones this install cannot run); server=False: the
    client commands alone (the server's packages are not even imported)."""
    parser = argparse.ArgumentParser(prog="fitboard", description="Launch and compare fastai training runs.")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in CLIENT_GROUPS:
        group.add_commands(sub)
    for name, commands in SERVER_GROUPS.items() if server else ():
        try:
            importlib.import_module(f"fitboard.worker.cli.{name}").add_commands(sub)
        except ModuleNotFoundError as exc:
            if not third_party(exc):
                raise
            for command, extra in commands.items():
                p = sub.add_parser(command, help=f"(needs fitboard[{extra}])", add_help=False)
                p.set_defaults(func=_missing(command, extra, exc.name), takes_any=True)
    return parser


def client_commands() -> set[str]:
    """The names of the commands that only talk HTTP."""
    sub = argparse.ArgumentParser().add_subparsers()
    for group in CLIENT_GROUPS:
        group.add_commands(sub)
    return set(sub.choices)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the fitboard console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # A client command starts in a fraction of the time without the web app's imports.
    parser = build_parser(server=next((a for a in argv if not a.startswith("-")), None) not in client_commands())
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "takes_any", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    install_log_redaction()  # web, worker and predictor log lines never show a credential
    # Names, errors and labels come from a server or a database: a terminal never gets their ESC, CR or U+202E.
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = SafeOutput(out), SafeOutput(err, keep="\n\t\r")  # \r: our own progress lines
    try:
        return args.func(args)
    except ModuleNotFoundError as exc:  # e.g. `fitboard worker` on a web-only install: no torch
        extra = needs_extra(exc)
        if extra is None:
            raise
        return _missing(args.command, extra, exc.name)(args)
    finally:
        sys.stdout, sys.stderr = out, err
