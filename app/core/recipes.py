"""Load recipes from YAML or JSON files into a validated RunSpec."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from fitboard.app.core.errors import RecipeError
from fitboard.app.core.schemas import RunSpec, parse_spec

MAX_RECIPE_BYTES = 64 * 1024  # a recipe pasted or uploaded in the browser; real ones are well under 2 KB


class _RecipeLoader(yaml.SafeLoader):
    """YAML without aliases: a recipe needs none, and *alias trees ("billion laughs") blow up when walked."""

    def compose_node(self, parent, index):
        """Refuse an alias where PyYAML would reuse the anchored node."""
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in a recipe", mark)
        return super().compose_node(parent, index)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error as 'line L, column C: what is wrong'."""
    mark = getattr(exc, "problem_mark", None)
    what = getattr(exc, "problem", None) or str(exc)
    return f"line {mark.line + 1}, column {mark.column + 1}: {what}" if mark else what


def parse_recipe_text(text: str, source: str, as_json: bool = False) -> dict:
    """A recipe's text (YAML, or JSON) as a dict; bad syntax, too much text or a non-mapping is a RecipeError."""
    if len(text.encode()) > MAX_RECIPE_BYTES:
        raise RecipeError.one(source, f"a recipe may have at most {MAX_RECIPE_BYTES // 1024} KB")
    try:
        if as_json:
            data = json.loads(text)
        else:
            data = yaml.load(text, Loader=_RecipeLoader)  # noqa: S506 - a SafeLoader subclass
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise RecipeError.one(source, f"cannot parse recipe: {where}: {exc.msg}") from None
    except yaml.YAMLError as exc:
        raise RecipeError.one(source, f"cannot parse recipe: {_yaml_problem(exc)}") from None
    except RecursionError:
        raise RecipeError.one(source, "cannot parse recipe: nested too deeply") from None
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
