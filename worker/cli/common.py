"""What every fitboard command shares: exit codes, printing, the server a client command asks (and how its refusals
read), settings with command-line overrides, the migrated engine.

Imported by the client commands too, so it loads nothing beyond fitboard's client: the server's packages (settings,
the database) load only when a command that needs them runs."""
from __future__ import annotations

import argparse
import os
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

from fitboard.errors import FitboardError, RecipeFileError, Unreachable
from fitboard.http import DEFAULT_URL

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from fitboard.app.core.settings import Settings
    from fitboard.client import Client

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def say(text: str) -> None:
    """A line for the person at the terminal (what the server named included), flushed at once."""
    print(text, flush=True)


def warn(text: str) -> None:
    """A line on stderr: why a command refused or failed."""
    print(text, file=sys.stderr, flush=True)


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings with command-line overrides applied."""
    from fitboard.app.core.settings import Settings

    overrides = {"data_root": Path(args.data_root)} if getattr(args, "data_root", None) else {}
    return Settings(**overrides)


def store_engine(settings: Settings) -> Engine:
    """The database engine, schema brought up to date first."""
    from fitboard.app.store.db import default_database_url, make_engine, upgrade

    url = default_database_url(settings)
    upgrade(url)
    return make_engine(url)


def add_data_root(parser: argparse.ArgumentParser) -> None:
    """The --data-root option several commands take."""
    parser.add_argument("--data-root", help="datasets folder (default $FITBOARD_DATA_ROOT)")


def add_url(parser: argparse.ArgumentParser) -> None:
    """The --url option of the commands that ask a server."""
    parser.add_argument("--url", help=f"server URL (default $FITBOARD_URL or {DEFAULT_URL})")


def add_project(parser: argparse.ArgumentParser) -> None:
    """The --project option of the commands that list or launch."""
    parser.add_argument("--project", help="the project to list or launch in (default $FITBOARD_PROJECT, else your "
                                          "default project)")


def has_store() -> bool:
    """Whether this install can open a fitboard database itself (the server's packages: fitboard[server])."""
    return find_spec("sqlmodel") is not None and find_spec("alembic") is not None


def asks_server(args: argparse.Namespace) -> bool:
    """Whether a command that can read either asks a server: one is named (--url, FITBOARD_URL), or this install
    has no database of its own (a light `pip install fitboard`)."""
    return bool(getattr(args, "url", None) or os.environ.get("FITBOARD_URL")) or not has_store()


def client_for(args: argparse.Namespace) -> Client:
    """fitboard.Client for --url (else FITBOARD_URL, else the default), with FITBOARD_API_TOKEN, in --project (else
    FITBOARD_PROJECT)."""
    from fitboard.client import Client

    return Client(getattr(args, "url", None), timeout=60.0, project=getattr(args, "project", None))


def refused(exc: Exception, url: str) -> int:
    """Say why the server (or the recipe file) refused, one line per problem; the exit code: 2 for bad input,
    1 otherwise."""
    if isinstance(exc, RecipeFileError):
        warn(f"refused: {exc}")
        return EXIT_INVALID
    if isinstance(exc, Unreachable):
        warn(f"cannot reach {url}: {exc.__cause__ or exc.detail}")
        return EXIT_FAILED
    if not isinstance(exc, FitboardError):
        raise exc
    detail = exc.detail
    problems = detail if isinstance(detail, list) else [{"loc": "", "msg": str(detail)}]
    for p in problems:
        warn(f"refused: {p.get('loc')}: {p.get('msg')}" if p.get("loc") else f"refused: {p.get('msg')}")
    return EXIT_INVALID if exc.status in (413, 422) else EXIT_FAILED
