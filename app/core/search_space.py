"""A search's space: recipe field paths with their choices or ranges, validated, applied to a base recipe, counted."""
from __future__ import annotations

import json
import math
import re

from fitboard.app.core.errors import RecipeError
from fitboard.app.core.schemas import parse_spec
from fitboard.app.core.sweep_plan import MAX_VALUES, get_path, set_path

MAX_PARAMS = 16  # fields one search varies
MAX_GRID = 10_000  # configurations a grid sampler may list (Optuna's GridSampler materialises every one)
MAX_DEPTH = 3  # lists and objects nested in one choice (an lr of [low, high] is 1; a list of stages 2)
INT_LIMIT = 2**53  # int range bounds: every one a float holds exactly, as JSON readers see them
KINDS = ("choices", "int", "float", "log")
_STAR = re.compile(r"\[\*\]")


def expand(base: dict, path: str) -> list[str]:
    """The concrete paths behind a path: stages[*].lr is stages[0].lr, stages[1].lr, ... of the base recipe."""
    m = _STAR.search(path)
    if not m:
        return [path]
    items = get_path(base, path[:m.start()])
    if not isinstance(items, list) or not items:
        raise KeyError(path)
    return [p for i in range(len(items)) for p in expand(base, f"{path[:m.start()]}[{i}]{path[m.end():]}")]


def _number(x) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, int):
        return abs(x) <= INT_LIMIT  # a huge int is no float (isfinite and float() would raise)
    return isinstance(x, float) and math.isfinite(x)


def depth(value) -> int:
    """How deeply lists and objects nest in a JSON value (0 for a number or string), counted without recursion."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        node, level = todo.pop()
        if isinstance(node, (list, dict)):
            level += 1
            deepest = max(deepest, level)
            if level > MAX_DEPTH + 1:
                break  # deep enough to refuse: no need to walk the rest
            todo.extend((v, level) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


def normalize(path: str, dist) -> dict:
    """One field's distribution as {"choices": [...]} or {"int"|"float"|"log": [low, high]} (a plain list means
    choices); RecipeError naming space.<path>."""
    loc = f"space.{path}"
    if isinstance(dist, list):
        dist = {"choices": dist}
    if not isinstance(dist, dict) or len(dist) != 1 or next(iter(dist)) not in KINDS:
        raise RecipeError.one(loc, "give a list of choices, or one of {choices: [...]}, {int: [low, high]}, "
                                   "{float: [low, high]}, {log: [low, high]}")
    kind, values = next(iter(dist.items()))
    if kind == "choices":
        if not isinstance(values, list) or not 1 <= len(values) <= MAX_VALUES:
            raise RecipeError.one(loc, f"give 1 to {MAX_VALUES} choices")
        if any(depth(v) > MAX_DEPTH for v in values):
            raise RecipeError.one(loc, f"a choice may nest lists and objects at most {MAX_DEPTH} deep")
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise RecipeError.one(loc, "the choices must be distinct")
        return {"choices": values}
    if not (isinstance(values, list) and len(values) == 2 and all(_number(v) for v in values)):
        raise RecipeError.one(loc, f"{kind}: give [low, high] as two numbers (whole ones within ±2**53)")
    low, high = values
    if not low < high:
        raise RecipeError.one(loc, f"{kind}: low must be below high")
    if kind == "int" and not all(float(v).is_integer() for v in values):
        raise RecipeError.one(loc, "int: give whole-number bounds")
    if kind == "log" and low <= 0:
        raise RecipeError.one(loc, "log: both bounds must be above 0")
    return {kind: [int(low), int(high)] if kind == "int" else [float(low), float(high)]}


def check_space(base: dict, space) -> dict:
    """The space with every path checked against the base recipe and every distribution normalized."""
    if not isinstance(space, dict) or not space:
        raise RecipeError.one("space", "give at least one field to search: {field path: [choices] or {log: [lo, hi]}}")
    if len(space) > MAX_PARAMS:
        raise RecipeError.one("space", f"at most {MAX_PARAMS} fields per search; got {len(space)}")
    out = {}
    for path, dist in space.items():
        try:
            concrete = expand(base, path)
            for p in concrete:
                get_path(base, p)
        except (KeyError, IndexError, TypeError, ValueError):
            raise RecipeError.one(f"space.{path}", f"the base recipe has no field {path!r}") from None
        out[path] = normalize(path, dist)
    return out


def grid_size(space: dict) -> int | None:
    """How many configurations the full grid has; None when a float range makes it endless."""
    sizes = []
    for dist in space.values():
        kind, values = next(iter(dist.items()))
        if kind == "choices":
            sizes.append(len(values))
        elif kind == "int":
            sizes.append(values[1] - values[0] + 1)
        else:
            return None
    return math.prod(sizes)


def check_grid(space: dict) -> int:
    """The grid's size, computed (never listed); RecipeError naming the widest field past MAX_GRID or endless."""
    size = grid_size(space)
    if size is None:
        raise RecipeError.one("sampler", "a grid needs choices or int ranges; a float or log range is endless")
    if size > MAX_GRID:
        widest = max(space, key=lambda p: grid_size({p: space[p]}))
        raise RecipeError.one(f"space.{widest}", f"a grid sampler lists every configuration: this space has {size:,}, "
                                                 f"at most {MAX_GRID:,} are allowed; narrow it or use sampler tpe "
                                                 "or random")
    return size


def overrides(base: dict, params: dict) -> dict:
    """{concrete path: value} a trial's params make (stages[*] expanded), for labels and the verify sweep."""
    return {p: value for path, value in params.items() for p in expand(base, path)}


def apply(base: dict, params: dict) -> dict:
    """The base recipe with a trial's params set, validated; RecipeError names the params that made it invalid."""
    spec = base
    for path, value in overrides(base, params).items():
        spec = set_path(spec, path, value)
    try:
        return parse_spec(spec).model_dump(mode="json")
    except RecipeError as exc:
        where = ", ".join(f"{k}={json.dumps(v)}" for k, v in params.items())
        raise RecipeError([{"loc": f"space ({where}): {p['loc']}", "msg": p["msg"]} for p in exc.problems]) from None


def _inside(dist: dict, value) -> bool:
    """Whether a value lies in a field's distribution."""
    kind, bounds = next(iter(dist.items()))
    if kind == "choices":
        return value in bounds
    if not _number(value) or not bounds[0] <= value <= bounds[1]:
        return False
    return kind != "int" or isinstance(value, int)


def check_first(space: dict, first) -> list[dict]:
    """Configurations to try first (after the base): each a {field path: value} inside the space."""
    if first is None:
        return []
    if not isinstance(first, list) or len(first) > MAX_VALUES:
        raise RecipeError.one("first", f"give a list of at most {MAX_VALUES} {{field path: value}} objects")
    for i, params in enumerate(first):
        if not isinstance(params, dict) or not params:
            raise RecipeError.one(f"first[{i}]", "give a {field path: value} object")
        for path, value in params.items():
            if path not in space:
                raise RecipeError.one(f"first[{i}].{path}", "not a field of the space")
            if not _inside(space[path], value):
                raise RecipeError.one(f"first[{i}].{path}", f"{json.dumps(value)} lies outside the space")
    return first


def base_params(base: dict, space: dict) -> dict | None:
    """The base recipe's own values as params, when every one lies in the space (the search starts from it)."""
    params = {}
    for path, dist in space.items():
        values = {json.dumps(get_path(base, p), sort_keys=True) for p in expand(base, path)}
        if len(values) != 1:
            return None
        value = json.loads(values.pop())
        if not _inside(dist, value):
            return None
        params[path] = value
    return params


PRESETS = {
    "learning rates": {"stages[*].lr": {"log": [1.0e-4, 3.0e-2]}},
    "regularisation: MixUp and label smoothing": {"stages[*].mixup": [None, 0.2, 0.4, 1.0],
                                                  "label_smoothing": [None, 0.05, 0.1]},
    "augmentation": {"augment.max_rotate": {"float": [0.0, 30.0]}, "augment.max_zoom": {"float": [1.0, 1.5]},
                     "augment.max_lighting": {"float": [0.0, 0.4]}, "augment.p_affine": {"float": [0.25, 1.0]}},
    "image sizes": {"stages[0].size": [16, 24, 32, 48], "stages[0].presize": [24, 32, 48, 64]},
}
