"""Load recipes from YAML or JSON files into a validated RunSpec."""
from __future__ import annotations

import json
from pathlib import Path

from fitboard.app.core.errors import RecipeError
from fitboard.app.core.schemas import RunSpec, parse_spec
from fitboard.app.core.yamlsafe import load_yaml

MAX_RECIPE_BYTES = 64 * 1024  # a recipe pasted or uploaded in the browser; real ones are well under 2 KB


def parse_recipe_text(text: str, source: str, as_json: bool = False) -> dict:
    """A recipe's text (YAML, or JSON) as a dict; bad syntax, too much text or a non-mapping is a RecipeError."""
    if len(text.encode()) > MAX_RECIPE_BYTES:
        raise RecipeError.one(source, f"a recipe may have at most {MAX_RECIPE_BYTES // 1024} KB")
    if not as_json:
        data = load_yaml(text, source, MAX_RECIPE_BYTES, failed="cannot parse recipe")
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            where = f"line {exc.lineno}, column {exc.colno}"
            raise RecipeError.one(source, f"cannot parse recipe: {where}: {exc.msg}") from None
        except (ValueError, RecursionError) as exc:  # a number of thousands of digits; nesting past the stack
            raise RecipeError.one(source, f"cannot parse recipe: {str(exc)[:80]}") from None
    if not isinstance(data, dict):
        raise RecipeError.one(source, "a recipe must hold a mapping of fields (name: ..., stages: ...)")
    return data


def read_recipe_file(path: str | Path) -> dict:
    """A YAML or JSON recipe file as a dict; a missing, oversized or malformed file is a RecipeError naming it."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError.one(str(path), "recipe file not found")
    return parse_recipe_text(path.read_text(encoding="utf-8"), str(path), as_json=path.suffix.lower() == ".json")


def load_recipe(path: str | Path) -> RunSpec:
    """Read and validate a recipe file."""
    return parse_spec(read_recipe_file(path))
