"""Load recipes from YAML or JSON files into a validated RunSpec."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from app.core.errors import RecipeError
from app.core.schemas import RunSpec, parse_spec


def read_recipe_file(path: str | Path) -> dict:
    """Read a YAML or JSON recipe file into a dict; a missing or malformed file is a RecipeError naming it."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError.one(str(path), "recipe file not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise RecipeError.one(str(path), f"cannot parse recipe: {exc}") from None
    if not isinstance(data, dict):
        raise RecipeError.one(str(path), "a recipe file must hold a mapping of fields")
    return data


def load_recipe(path: str | Path) -> RunSpec:
    """Read and validate a recipe file."""
    return parse_spec(read_recipe_file(path))
