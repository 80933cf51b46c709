"""Load recipes from YAML or JSON files into a validated RunSpec."""
from __future__ import annotations

from pathlib import Path

from fitboard import recipe_files
from fitboard.app.core.errors import RecipeError
from fitboard.app.core.schemas import RunSpec, parse_spec
from fitboard.errors import RecipeFileError

MAX_RECIPE_BYTES = recipe_files.MAX_RECIPE_BYTES


def parse_recipe_text(text: str, source: str, as_json: bool = False) -> dict:
    """A recipe's text (YAML, or JSON) as a dict; bad syntax, too much text or a non-mapping is a RecipeError."""
    try:
        return recipe_files.parse_recipe_text(text, source, as_json)
    except RecipeFileError as exc:
        raise RecipeError.one(exc.loc, exc.msg) from None


def read_recipe_file(path: str | Path) -> dict:
    """A YAML or JSON recipe file as a dict; a missing, oversized or malformed file is a RecipeError naming it."""
    try:
        return recipe_files.read_recipe_file(path)
    except RecipeFileError as exc:
        raise RecipeError.one(exc.loc, exc.msg) from None


def load_recipe(path: str | Path) -> RunSpec:
    """Read and validate a recipe file."""
    return parse_spec(read_recipe_file(path))
