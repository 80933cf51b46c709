"""The one YAML loader for what users paste or upload (a recipe, a search space): plain data only. No aliases
("billion laughs": a few hundred characters of *refs walk into megabytes), no tags, a bounded size and depth, and
numbers Python cannot convert refused as bad input rather than failing the request."""
from __future__ import annotations

import yaml

from fitboard.app.core.errors import RecipeError

MAX_DEPTH = 32  # lists and mappings nested in one document; recipes and spaces need 4
NON_SPECIFIC = (None, "!")  # an untagged node, or a quoted scalar's "!"
COLLECTIONS = (yaml.SequenceStartEvent, yaml.MappingStartEvent)


class _PlainLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases, explicit tags and deep nesting while composing (before any walk)."""

    depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self._refuse("aliases (*name) are not allowed", event)
        if getattr(event, "tag", None) not in NON_SPECIFIC:
            self._refuse(f"tags ({event.tag}) are not allowed", event)
        nested = isinstance(event, COLLECTIONS)
        if nested:
            self.depth += 1
            if self.depth > MAX_DEPTH:
                self._refuse(f"lists and mappings nest more than {MAX_DEPTH} deep", event)
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= nested

    def _refuse(self, what: str, event) -> None:
        raise yaml.composer.ComposerError(None, None, what, event.start_mark)


def _problem(exc: yaml.YAMLError) -> str:
    """A YAML error as 'line L, column C: what is wrong'."""
    mark = getattr(exc, "problem_mark", None)
    what = getattr(exc, "problem", None) or str(exc)
    return f"line {mark.line + 1}, column {mark.column + 1}: {what}" if mark else what


def load_yaml(text: str, source: str, max_bytes: int, failed: str = "not valid YAML"):
    """text parsed as YAML plain data; RecipeError naming `source` (its message starting with `failed`) for too
    much text or anything refused."""
    if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise RecipeError.one(source, f"at most {max_bytes // 1024} KB of YAML")
    try:
        return yaml.load(text, Loader=_PlainLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise RecipeError.one(source, f"{failed}: {_problem(exc)}") from None
    except ValueError as exc:  # an integer of thousands of digits (Python's limit on converting them)
        raise RecipeError.one(source, f"{failed}: a number is out of range ({str(exc)[:80]})") from None
    except RecursionError:
        raise RecipeError.one(source, f"{failed}: nested too deeply") from None
