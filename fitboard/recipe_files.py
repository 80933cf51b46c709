"""Recipe files (YAML or JSON) as dicts: read by the client, the command line and the server alike (PyYAML only).

Validation against the RunSpec is the server's; here a file is only read, bounded and parsed, and each problem
names the file (or the form field) it came from."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from fitboard.errors import RecipeFileError

MAX_RECIPE_BYTES = 64 * 1024  # a recipe pasted or uploaded in the browser; real ones are well under 2 KB


class _RecipeLoader(yaml.SafeLoader):
    """YAML without aliases: a recipe or a search space needs none, and *alias trees ("billion laughs") blow up
    when walked."""

    def compose_node(self, parent, index):
        """Refuse an alias where PyYAML would reuse the anchored node."""
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed", mark)
        return super().compose_node(parent, index)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error as 'line L, column C: what is wrong'."""
    mark = getattr(exc, "problem_mark", None)
    what = getattr(exc, "problem", None) or str(exc)
    return f"line {mark.line + 1}, column {mark.column + 1}: {what}" if mark else what


def parse_text(text: str | bytes, source: str, as_json: bool = False, failed: str = "cannot parse recipe"):
    """JSON, or YAML without aliases, as plain data; a RecipeFileError naming source (its message starting with
    `failed`) for bad syntax, deep nesting or a number Python cannot convert."""
    try:
        if as_json:
            return json.loads(text)
        return yaml.load(text, Loader=_RecipeLoader)  # noqa: S506 - a SafeLoader subclass
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise RecipeFileError(source, f"{failed}: {where}: {exc.msg}") from None
    except yaml.YAMLError as exc:
        raise RecipeFileError(source, f"{failed}: {_yaml_problem(exc)}") from None
    except RecursionError:
        raise RecipeFileError(source, f"{failed}: nested too deeply") from None
    except ValueError as exc:  # an integer of thousands of digits (Python's limit on converting them)
        raise RecipeFileError(source, f"{failed}: a number is out of range ({str(exc)[:80]})") from None


def parse_recipe_text(text: str, source: str, as_json: bool = False) -> dict:
    """A recipe's text (YAML, or JSON) as a dict; bad syntax, too much text or a non-mapping is a RecipeFileError."""
    if len(text.encode()) > MAX_RECIPE_BYTES:
        raise RecipeFileError(source, f"a recipe may have at most {MAX_RECIPE_BYTES // 1024} KB")
    data = parse_text(text, source, as_json)
    if not isinstance(data, dict):
        raise RecipeFileError(source, "a recipe must hold a mapping of fields (name: ..., stages: ...)")
    return data


def read_recipe_file(path: str | Path) -> dict:
    """A YAML or JSON recipe file as a dict; a missing, oversized or malformed file is a RecipeFileError naming it."""
    path = Path(path)
    if not path.is_file():
        raise RecipeFileError(str(path), "recipe file not found")
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_RECIPE_BYTES + 1)  # never more than the bound into memory
        if len(raw) > MAX_RECIPE_BYTES:
            raise RecipeFileError(str(path), f"a recipe may have at most {MAX_RECIPE_BYTES // 1024} KB")
        text = raw.decode("utf-8")
    except OSError as exc:
        raise RecipeFileError(str(path), f"cannot read the recipe file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise RecipeFileError(str(path), "not UTF-8 text (a YAML or JSON recipe)") from None
    return parse_recipe_text(text, str(path), as_json=path.suffix.lower() == ".json")
