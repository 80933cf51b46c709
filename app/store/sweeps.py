"""Sweeps in the database: store one with its runs, read it back, and report what each variant changed."""
from __future__ import annotations

from collections import defaultdict

from sqlalchemy import func, select
from sqlmodel import Session

from fitboard.app.core.errors import SweepNotFound
from fitboard.app.core.schemas import parse_spec
from fitboard.app.core.stats import paired_difference, summary, verdict
from fitboard.app.core.status import FINISHED, RunStatus
from fitboard.app.core.sweep_plan import BASE_KEY
from fitboard.app.core.variant_words import variant_name
from fitboard.app.store.models import EpochRow, Run, Sweep
from fitboard.app.store.runs import create_run, get_or_raise


def store_sweep(session: Session, name: str, base: dict, vary: dict, mode: str, seeds: list[int],
                variants: list[dict], priority: str = "normal") -> Sweep:
    """Add a sweep row (its runs come from queue_sweep_runs, with its priority; the caller commits)."""
    sweep = Sweep(name=name, base=base, vary=vary, mode=mode, seeds=seeds, variants=variants, priority=priority)
    session.add(sweep)
    session.flush()
    return sweep


def queue_sweep_runs(session: Session, sweep: Sweep, specs: dict[str, dict], pairs: list[tuple[dict, int]],
                     queue: str) -> list[Run]:
    """One queued run per (variant, seed) pair (the caller commits, then publishes)."""
    runs = []
    for v, seed in pairs:
        # Named in words ("label smoothing 0.1"), as the verdicts are; the field path stays the variant's label.
        spec = {**specs[v["key"]], "seed": seed, "name": f"{sweep.name} | {variant_name(v, sweep.base)} | seed {seed}"}
        runs.append(create_run(session, spec, techniques=parse_spec(spec).techniques(), queue=queue,
                               sweep_id=sweep.id, variant=v["key"], priority=sweep.priority or "normal"))
    session.flush()
    return runs


def get_sweep(session: Session, sweep_id: int) -> Sweep:
    """A sweep by id, or SweepNotFound."""
    return get_or_raise(session, Sweep, sweep_id, SweepNotFound(sweep_id))


def _mean_curves(session: Session, runs_by_variant: dict[str, list]) -> dict[str, dict]:
    """Per variant: mean and std of accuracy per cumulative epoch over its finished seeds."""
    ids = [r.id for runs in runs_by_variant.values() for r in runs if r.status == RunStatus.succeeded]
    # Two columns per row, the accuracy read out of the JSON by the database: a 500-run sweep has 10,000 rows
    stmt = (select(EpochRow.run_id, EpochRow.metrics["accuracy"].as_float()).where(EpochRow.run_id.in_(ids))
            .order_by(EpochRow.run_id, EpochRow.stage, EpochRow.epoch))
    per_run = defaultdict(list)
    for run_id, accuracy in (session.exec(stmt).all() if ids else []):
        per_run[run_id].append(accuracy)
    curves = {}
    for key, runs in runs_by_variant.items():
        series = [per_run[r.id] for r in runs if per_run.get(r.id)]
        length = min((len(s) for s in series), default=0)
        points = [summary([s[i] for s in series if s[i] is not None]) for i in range(length)]
        curves[key] = {"epoch": list(range(length)), "mean": [p["mean"] for p in points],
                       "std": [p["std"] or 0.0 for p in points], "n": len(series)}
    return curves


def _seed_values(runs: list, column: str) -> dict[int, float]:
    """seed -> final metric for a variant's succeeded runs."""
    return {r.seed: getattr(r, column) for r in runs
            if r.status == RunStatus.succeeded and getattr(r, column) is not None}


def sweep_report(session: Session, sweep_id: int, curves: bool = True) -> dict:
    """Each variant: overrides, runs, mean/std of accuracy and TTA accuracy, and the seed-paired difference to base;
    curves=False leaves out the mean curves (the runs list only needs the verdicts)."""
    sweep = get_sweep(session, sweep_id)
    # The columns the report shows, in one query (no run objects: their recipes and results are never read here)
    runs = session.exec(select(Run.id, Run.variant, Run.status, Run.best_accuracy, Run.tta_accuracy,
                               Run.spec["seed"].as_integer().label("seed"))
                        .where(Run.sweep_id == sweep_id).order_by(Run.id)).all()
    by_variant = defaultdict(list)
    for r in runs:
        by_variant[r.variant].append(r)
    base_acc, base_tta = (_seed_values(by_variant[BASE_KEY], c) for c in ("best_accuracy", "tta_accuracy"))
    variants = []
    for v in sweep.variants:
        vruns = by_variant[v["key"]]
        acc, tta = _seed_values(vruns, "best_accuracy"), _seed_values(vruns, "tta_accuracy")
        entry = {**v, "runs": [{"id": r.id, "seed": r.seed, "status": r.status, "accuracy": r.best_accuracy,
                                "tta_accuracy": r.tta_accuracy} for r in vruns],
                 "accuracy": summary(list(acc.values())), "tta_accuracy": summary(list(tta.values()))}
        if v["key"] != BASE_KEY:
            diff = paired_difference([(acc[s], base_acc[s]) for s in acc if s in base_acc])
            tdiff = paired_difference([(tta[s], base_tta[s]) for s in tta if s in base_tta])
            entry.update(diff_accuracy=diff, diff_tta_accuracy=tdiff,
                         verdict=verdict(variant_name(v, sweep.base), diff))
        variants.append(entry)
    statuses = [r.status for r in runs]
    return {"id": sweep.id, "name": sweep.name, "mode": sweep.mode, "seeds": sweep.seeds, "vary": sweep.vary,
            "base": sweep.base, "created_at": sweep.created_at.isoformat(), "variants": variants,
            "runs_total": len(runs), "runs_finished": sum(s in FINISHED for s in statuses),
            "curves": _mean_curves(session, by_variant) if curves else {}}


def list_sweeps(session: Session, limit: int = 200) -> list[tuple[Sweep, int, int]]:
    """The newest sweeps with how many runs each has and how many of those finished."""
    sweeps = session.exec(select(Sweep).order_by(Sweep.created_at.desc(), Sweep.id.desc()).limit(limit)).scalars().all()
    counts: dict[int, tuple[int, int]] = {}
    if sweeps:
        for sweep_id, status, n in session.exec(select(Run.sweep_id, Run.status, func.count()).where(
                Run.sweep_id.in_([s.id for s in sweeps])).group_by(Run.sweep_id, Run.status)).all():
            total, done = counts.get(sweep_id, (0, 0))
            counts[sweep_id] = (total + n, done + (n if status in FINISHED else 0))
    return [(s, *counts.get(s.id, (0, 0))) for s in sweeps]
