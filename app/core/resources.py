"""Files that ship inside the package (templates, migrations, static assets, demo data), found by importlib.resources.

In a wheel they live under app/; in a source checkout setuptools maps fitboard.templates and fitboard.migrations to the
top-level templates/ and migrations/ folders, so the same lookup works in both.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def _folder(package: str) -> Path:
    """A package's folder on disk (fitboard is never imported from a zip)."""
    return Path(str(files(package)))


def templates_dir() -> Path:
    """The Jinja2 templates."""
    return _folder("fitboard.templates")


def migrations_dir() -> Path:
    """Alembic's script location (env.py and versions/)."""
    return _folder("fitboard.migrations")


def static_dir() -> Path:
    """The pages' own JS and CSS."""
    return _folder("fitboard.app") / "static"


def digits_csv() -> Path:
    """scikit-learn's 8x8 digits (BSD-3-Clause), 1,797 rows of 64 pixels (0..16) and the label."""
    return _folder("fitboard.app.core") / "data" / "digits.csv.gz"
