"""Ablation sweeps as the API, the pages and the CLI use them: validate and plan, store, commit, publish, report."""
from __future__ import annotations

from pathlib import Path

from sqlmodel import Session

from app.core.errors import RecipeError
from app.core.sweep_plan import check_seeds, check_vary, plan_variants, variant_specs
from app.services.queue import Publisher
from app.services.runs import publish_committed, validate_recipe
from app.store import sweeps as store
from app.store.models import Run, Sweep

MODES = ("grid", "one_at_a_time")


def create(session: Session, publisher: Publisher, base: dict, vary: dict, seeds: list[int], mode: str,
           data_root: Path) -> tuple[Sweep, list[Run]]:
    """Validate the base, the varied fields and the dataset; store the sweep and one run per variant and seed,
    commit, then publish the runs."""
    if mode not in MODES:
        raise RecipeError.one("mode", "mode must be 'grid' or 'one_at_a_time'")
    seeds = check_seeds(seeds)
    spec, _ = validate_recipe(session, base, data_root)
    base = spec.model_dump(mode="json")
    if not isinstance(vary, dict) or not vary:
        raise RecipeError.one("vary", "vary at least one field: {field path: [values]}")
    check_vary(base, vary)
    variants = plan_variants(base, vary, mode)
    specs = variant_specs(base, variants)
    sweep = store.store_sweep(session, spec.name, base, vary, mode, seeds, variants)
    runs = store.queue_sweep_runs(session, sweep, specs, seeds)
    publish_committed(session, publisher, runs)
    return sweep, runs


def add_seeds(session: Session, publisher: Publisher, sweep_id: int, seeds: list[int]) -> list[Run]:
    """Run every variant for more seeds (seeds already in the sweep are refused), committed and published."""
    sweep = store.get_sweep(session, sweep_id)
    seeds = check_seeds(seeds)
    again = sorted(set(seeds) & set(sweep.seeds))
    if again:
        raise RecipeError.one("seeds", f"the sweep already ran seeds {again}")
    runs = store.queue_sweep_runs(session, sweep, variant_specs(sweep.base, sweep.variants), seeds)
    sweep.seeds = [*sweep.seeds, *seeds]
    publish_committed(session, publisher, runs)
    return runs


def next_seeds(session: Session, sweep_id: int, count: int) -> list[int]:
    """The next `count` seeds after the highest one the sweep already ran."""
    start = max(store.get_sweep(session, sweep_id).seeds, default=-1) + 1
    return list(range(start, start + count))


def report(session: Session, sweep_id: int) -> dict:
    """Each variant's runs, mean and std, and its seed-paired difference to the base; SweepNotFound if none."""
    return store.sweep_report(session, sweep_id)


def recent(session: Session) -> list[tuple[Sweep, int, int]]:
    """The newest sweeps with their run counts (total, finished)."""
    return store.list_sweeps(session)
