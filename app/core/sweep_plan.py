"""Planning an ablation sweep: field paths into a recipe, the variants to train, and their validated recipes."""
from __future__ import annotations

import copy
import itertools
import json
import math
import re

from fitboard.app.core.errors import RecipeError
from fitboard.app.core.schemas import parse_spec

_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)")
BASE_KEY = "{}"


def _steps(path: str) -> list:
    """Split a field path such as stages[2].mixup into ['stages', 2, 'mixup']."""
    steps = []
    for part in path.split("."):
        m = _PART.fullmatch(part)
        if not m:
            raise ValueError(f"{path!r} is not a field path (like label_smoothing or stages[2].mixup)")
        steps.append(m.group(1))
        steps += [int(i) for i in re.findall(r"\[(\d+)\]", m.group(2))]
    return steps


def get_path(spec: dict, path: str):
    """The value at a field path (KeyError/IndexError when the recipe has no such place)."""
    node = spec
    for step in _steps(path):
        node = node[step]
    return node


def set_path(spec: dict, path: str, value) -> dict:
    """A copy of spec with the value at path replaced; the path must already exist (stages are not invented)."""
    out = copy.deepcopy(spec)
    *parents, last = _steps(path)
    node = out
    for step in parents:
        node = node[step]
    if isinstance(last, int) and last >= len(node):
        raise IndexError(last)
    node[last] = value
    return out


def variant_label(overrides: dict) -> str:
    """A short human label: 'label_smoothing=0.1, stages[2].mixup=null'."""
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in overrides.items()) or "base"


def plan_variants(base: dict, vary: dict, mode: str) -> list[dict]:
    """The base variant first, then each distinct variant: one field at a time, or the full grid."""
    if mode == "one_at_a_time":
        combos = [{path: v} for path, values in vary.items() for v in values]
    else:
        combos = [dict(zip(vary, values)) for values in itertools.product(*vary.values())]
    variants, seen = [{"key": BASE_KEY, "label": "base", "overrides": {}}], {BASE_KEY}
    for combo in combos:
        overrides = {p: v for p, v in combo.items() if get_path(base, p) != v}  # equal to base: not a change
        key = json.dumps(overrides, sort_keys=True)
        if key not in seen:
            seen.add(key)
            variants.append({"key": key, "label": variant_label(overrides), "overrides": overrides})
    return variants


MAX_VALUES = 64  # values of one varied field


def max_variants(vary: dict, mode: str) -> int:
    """An upper bound on the variants a plan makes, computed without building them (the base included)."""
    sizes = [len(v) if isinstance(v, list) else 1 for v in vary.values()]
    return 1 + (sum(sizes) if mode == "one_at_a_time" else math.prod(sizes))


def check_size(vary: dict, mode: str, n_seeds: int, max_runs: int) -> None:
    """Refuse a sweep of more than max_runs runs (variants x seeds) before anything is planned or stored."""
    runs = max_variants(vary, mode) * n_seeds
    if runs > max_runs:
        raise RecipeError.one("vary", f"this sweep would train up to {runs} runs ({max_variants(vary, mode)} "
                                      f"variants x {n_seeds} seeds); at most {max_runs} are allowed "
                                      "(FITBOARD_MAX_SWEEP_RUNS): vary fewer values or use fewer seeds")


def check_vary(base: dict, vary: dict) -> None:
    """Every varied path must exist in the base recipe and come with 1 to MAX_VALUES distinct values."""
    problems = []
    for path, values in vary.items():
        if isinstance(values, list) and len(values) > MAX_VALUES:
            problems.append({"loc": f"vary.{path}", "msg": f"at most {MAX_VALUES} values per field; got {len(values)}"})
            continue
        try:
            get_path(base, path)
        except (KeyError, IndexError, TypeError, ValueError):
            problems.append({"loc": f"vary.{path}", "msg": f"the base recipe has no field {path!r}"})
            continue
        if not isinstance(values, list) or not values:
            problems.append({"loc": f"vary.{path}", "msg": "give a non-empty list of values"})
            continue
        texts = [json.dumps(v, sort_keys=True) for v in values]  # [0.1, 0.1] made two identical variants
        if len(set(texts)) != len(texts):
            again = next(t for i, t in enumerate(texts) if t in texts[:i])
            problems.append({"loc": f"vary.{path}", "msg": f"values must be distinct; {again[:40]} repeats"})
    if problems:
        raise RecipeError(problems)


def variant_specs(base: dict, variants: list[dict]) -> dict[str, dict]:
    """Each variant's full recipe, validated; a bad value is reported at vary.<path>."""
    specs = {}
    for v in variants:
        spec = base
        for path, value in v["overrides"].items():
            spec = set_path(spec, path, value)
        try:
            specs[v["key"]] = parse_spec(spec).model_dump(mode="json")
        except RecipeError as exc:
            where = ", ".join(f"{k}={json.dumps(x)}" for k, x in v["overrides"].items())
            raise RecipeError([{"loc": f"vary ({where}): {p['loc']}", "msg": p["msg"]} for p in exc.problems]) from None
    return specs


def check_seeds(seeds) -> list[int]:
    """Seeds are distinct integers."""
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise RecipeError.one("seeds", "give a non-empty list of integer seeds")
    if len(set(seeds)) != len(seeds):
        raise RecipeError.one("seeds", "seeds must be distinct")
    if not all(0 <= s < 2**32 for s in seeds):
        raise RecipeError.one("seeds", "seeds must lie in [0, 2**32)")
    return seeds
