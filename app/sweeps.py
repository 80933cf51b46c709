"""Ablation sweeps: variants of a base recipe times seeds, and an honest report of what each variant changed."""
from __future__ import annotations

import copy
import itertools
import json
import re
from collections import defaultdict
from pathlib import Path

from sqlalchemy import select
from sqlmodel import Session

from app.models import EpochRow, Run, Sweep
from app.runs import create_run
from app.schemas import RecipeError, parse_spec
from app.stats import paired_difference, summary, verdict
from app.submit import validate_recipe

_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)")
BASE_KEY = "{}"


class SweepNotFound(LookupError):
    """No sweep with this id."""

    def __init__(self, sweep_id: int):
        super().__init__(f"sweep {sweep_id} not found")


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


def _check_vary(base: dict, vary: dict) -> None:
    """Every varied path must exist in the base recipe and come with at least one value."""
    problems = []
    for path, values in vary.items():
        try:
            get_path(base, path)
        except (KeyError, IndexError, TypeError, ValueError):
            problems.append({"loc": f"vary.{path}", "msg": f"the base recipe has no field {path!r}"})
            continue
        if not isinstance(values, list) or not values:
            problems.append({"loc": f"vary.{path}", "msg": "give a non-empty list of values"})
    if problems:
        raise RecipeError(problems)


def _variant_specs(base: dict, variants: list[dict]) -> dict[str, dict]:
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


def _queue_runs(session: Session, sweep: Sweep, specs: dict[str, dict], seeds: list[int]) -> list[Run]:
    """One queued run per variant and seed (the caller commits, then enqueues)."""
    runs = []
    for v in sweep.variants:
        for seed in seeds:
            spec = {**specs[v["key"]], "seed": seed, "name": f"{sweep.name} | {v['label']} | seed {seed}"}
            run = create_run(session, spec, techniques=parse_spec(spec).techniques())
            run.sweep_id, run.variant = sweep.id, v["key"]
            runs.append(run)
    session.flush()
    return runs


def _check_seeds(seeds) -> list[int]:
    """Seeds are distinct integers."""
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise RecipeError.one("seeds", "give a non-empty list of integer seeds")
    if len(set(seeds)) != len(seeds):
        raise RecipeError.one("seeds", "seeds must be distinct")
    return seeds


def create_sweep(session: Session, base: dict, vary: dict, seeds: list[int], mode: str,
                 data_root: Path) -> tuple[Sweep, list[Run]]:
    """Validate the base, the varied fields and the dataset; store the sweep and one queued run per variant and seed."""
    if mode not in ("grid", "one_at_a_time"):
        raise RecipeError.one("mode", "mode must be 'grid' or 'one_at_a_time'")
    seeds = _check_seeds(seeds)
    spec, _ = validate_recipe(session, base, data_root)
    base = spec.model_dump(mode="json")
    if not isinstance(vary, dict) or not vary:
        raise RecipeError.one("vary", "vary at least one field: {field path: [values]}")
    _check_vary(base, vary)
    variants = plan_variants(base, vary, mode)
    specs = _variant_specs(base, variants)
    sweep = Sweep(name=spec.name, base=base, vary=vary, mode=mode, seeds=seeds, variants=variants)
    session.add(sweep)
    session.flush()
    return sweep, _queue_runs(session, sweep, specs, seeds)


def get_sweep(session: Session, sweep_id: int) -> Sweep:
    """A sweep by id, or SweepNotFound."""
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        raise SweepNotFound(sweep_id)
    return sweep


def add_seeds(session: Session, sweep_id: int, seeds: list[int]) -> list[Run]:
    """Queue every variant for more seeds (seeds already in the sweep are refused)."""
    sweep = get_sweep(session, sweep_id)
    seeds = _check_seeds(seeds)
    again = sorted(set(seeds) & set(sweep.seeds))
    if again:
        raise RecipeError.one("seeds", f"the sweep already ran seeds {again}")
    runs = _queue_runs(session, sweep, _variant_specs(sweep.base, sweep.variants), seeds)
    sweep.seeds = [*sweep.seeds, *seeds]
    return runs


def _mean_curves(session: Session, runs_by_variant: dict[str, list[Run]]) -> dict[str, dict]:
    """Per variant: mean and std of accuracy per cumulative epoch over its finished seeds."""
    ids = [r.id for runs in runs_by_variant.values() for r in runs if r.status == "succeeded"]
    rows = session.exec(select(EpochRow).where(EpochRow.run_id.in_(ids))
                        .order_by(EpochRow.run_id, EpochRow.stage, EpochRow.epoch)).scalars().all() if ids else []
    per_run = defaultdict(list)
    for r in rows:
        per_run[r.run_id].append((r.metrics or {}).get("accuracy"))
    curves = {}
    for key, runs in runs_by_variant.items():
        series = [per_run[r.id] for r in runs if per_run.get(r.id)]
        length = min((len(s) for s in series), default=0)
        points = [summary([s[i] for s in series if s[i] is not None]) for i in range(length)]
        curves[key] = {"epoch": list(range(length)), "mean": [p["mean"] for p in points],
                       "std": [p["std"] or 0.0 for p in points], "n": len(series)}
    return curves


def _seed_values(runs: list[Run], column: str) -> dict[int, float]:
    """seed -> final metric for a variant's succeeded runs."""
    return {r.spec["seed"]: getattr(r, column) for r in runs if r.status == "succeeded" and getattr(r, column) is not None}


def sweep_report(session: Session, sweep_id: int) -> dict:
    """Each variant: overrides, runs, mean/std of accuracy and TTA accuracy, and the seed-paired difference to base."""
    sweep = get_sweep(session, sweep_id)
    runs = session.exec(select(Run).where(Run.sweep_id == sweep_id).order_by(Run.id)).scalars().all()
    by_variant = defaultdict(list)
    for r in runs:
        by_variant[r.variant].append(r)
    base_acc, base_tta = (_seed_values(by_variant[BASE_KEY], c) for c in ("best_accuracy", "tta_accuracy"))
    variants = []
    for v in sweep.variants:
        vruns = by_variant[v["key"]]
        acc, tta = _seed_values(vruns, "best_accuracy"), _seed_values(vruns, "tta_accuracy")
        entry = {**v, "runs": [{"id": r.id, "seed": r.spec["seed"], "status": r.status, "accuracy": r.best_accuracy,
                                "tta_accuracy": r.tta_accuracy} for r in vruns],
                 "accuracy": summary(list(acc.values())), "tta_accuracy": summary(list(tta.values()))}
        if v["key"] != BASE_KEY:
            diff = paired_difference([(acc[s], base_acc[s]) for s in acc if s in base_acc])
            tdiff = paired_difference([(tta[s], base_tta[s]) for s in tta if s in base_tta])
            entry.update(diff_accuracy=diff, diff_tta_accuracy=tdiff, verdict=verdict(v["label"], diff))
        variants.append(entry)
    statuses = [r.status for r in runs]
    return {"id": sweep.id, "name": sweep.name, "mode": sweep.mode, "seeds": sweep.seeds, "vary": sweep.vary,
            "base": sweep.base, "created_at": sweep.created_at.isoformat(), "variants": variants,
            "runs_total": len(runs), "runs_finished": sum(s in ("succeeded", "failed", "cancelled") for s in statuses),
            "curves": _mean_curves(session, by_variant)}
