"""Ablation sweeps as the API, the pages and the CLI use them: validate and plan, store, commit, publish, report."""
from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError
from sqlmodel import Session

from fitboard.app.core.datasets import resolve_dataset
from fitboard.app.core.errors import RecipeError
from fitboard.app.core.fairshare import check_priority
from fitboard.app.core.schemas import DatasetSpec, problems_from
from fitboard.app.core.stats import MIN_SEEDS, verdict
from fitboard.app.core.sweep_plan import check_seeds, check_size, check_vary, plan_variants, variant_specs
from fitboard.app.core.variant_words import variant_words
from fitboard.app.services.queue import Publisher
from fitboard.app.services.recovery import publish_committed
from fitboard.app.services.runs import registry_for, validate_recipe
from fitboard.app.store import sweeps as store
from fitboard.app.store.models import Run, Sweep

MODES = ("grid", "one_at_a_time")
BATCH = 32  # runs stored and published per transaction: a big sweep never holds the database for long


def _inline_dataset(value: dict) -> DatasetSpec:
    """A varied inline dataset as a DatasetSpec; RecipeError naming its bad fields."""
    try:
        return DatasetSpec.model_validate(value)
    except ValidationError as exc:
        raise RecipeError(problems_from(exc)) from None


def _check_datasets(session: Session, vary: dict, data_root: Path) -> None:
    """Datasets a sweep varies over are validated here, like the base's, before anything is stored."""
    for value in vary.get("dataset", []):
        try:
            # As a recipe's dataset field reads it: a name, or an inline spec (a dict went to the registry's query as
            # a bound value: 500). Any other type is left to the variants' validation, which names it.
            if isinstance(value, dict):
                ref = _inline_dataset(value)
            elif isinstance(value, str):
                ref = value
            else:
                continue
            resolve_dataset(ref, data_root, registry=registry_for(session))
        except RecipeError as exc:
            raise RecipeError([{"loc": f"vary.dataset ({value!r}): {p['loc']}", "msg": p["msg"]}
                               for p in exc.problems]) from None


def store_and_publish(session: Session, publisher: Publisher, sweep: Sweep, specs: dict,
                       seeds: list[int]) -> tuple[list[Run], str | None]:
    """The sweep's runs in batches, each committed and then published; the note says when the broker was down."""
    pairs = [(v, seed) for v in sweep.variants for seed in seeds]
    runs, note = [], None
    for start in range(0, len(pairs), BATCH):
        batch = store.queue_sweep_runs(session, sweep, specs, pairs[start:start + BATCH], publisher.queue)
        runs += batch
        if note is None:
            note = publish_committed(session, publisher, batch)
        else:
            session.commit()  # the broker is down: store the rest; the reconciler sends them later
    return runs, note


def create(session: Session, publisher: Publisher, base: dict, vary: dict, seeds: list[int], mode: str,
           data_root: Path, max_runs: int, priority: str = "normal") -> tuple[Sweep, list[Run], str | None]:
    """Validate the base, the varied fields, their datasets and the size; store the sweep and one run per variant
    and seed, committed and published in batches. The note says when the broker could not take them yet."""
    if mode not in MODES:
        raise RecipeError.one("mode", "mode must be 'grid' or 'one_at_a_time'")
    priority = check_priority(priority)
    seeds = check_seeds(seeds)
    if len(seeds) < MIN_SEEDS:  # the report could give no interval: a verdict that cannot tell change from noise
        raise RecipeError.one("seeds", f"give at least {MIN_SEEDS} seeds: with fewer, the paired difference to the "
                                       f"base has no confidence interval; got {len(seeds)}")
    if not isinstance(vary, dict) or not vary:
        raise RecipeError.one("vary", "vary at least one field: {field path: [values]}")
    check_size(vary, mode, len(seeds), max_runs)
    spec, _ = validate_recipe(session, base, data_root)
    base = spec.model_dump(mode="json")
    check_vary(base, vary)
    _check_datasets(session, vary, data_root)
    variants = plan_variants(base, vary, mode)
    specs = variant_specs(base, variants)
    sweep = store.store_sweep(session, spec.name, base, vary, mode, seeds, variants, priority)
    runs, note = store_and_publish(session, publisher, sweep, specs, seeds)
    return sweep, runs, note


def add_seeds(session: Session, publisher: Publisher, sweep_id: int, seeds: list[int],
              max_runs: int) -> tuple[list[Run], str | None]:
    """Run every variant for more seeds (seeds already in the sweep are refused), committed and published."""
    sweep = store.get_sweep(session, sweep_id)
    seeds = check_seeds(seeds)
    again = sorted(set(seeds) & set(sweep.seeds))
    if again:
        raise RecipeError.one("seeds", f"the sweep already ran seeds {again}")
    total = len(sweep.variants) * (len(sweep.seeds) + len(seeds))
    if total > max_runs:
        raise RecipeError.one("seeds", f"the sweep would have {total} runs; at most {max_runs} are allowed "
                                       "(FITBOARD_MAX_SWEEP_RUNS)")
    specs = variant_specs(sweep.base, sweep.variants)
    sweep.seeds = [*sweep.seeds, *seeds]
    return store_and_publish(session, publisher, sweep, specs, seeds)


def next_seeds(session: Session, sweep_id: int, count: int) -> list[int]:
    """The next `count` seeds after the highest one the sweep already ran."""
    start = max(store.get_sweep(session, sweep_id).seeds, default=-1) + 1
    return list(range(start, start + count))


def _in_words(report: dict) -> dict:
    """Each variant also named in words (its label stays the field path, the key people type), and its verdict
    worded with that name."""
    for v in report["variants"]:
        v["words"] = variant_words(v.get("overrides") or {}, report["base"])
        if "diff_accuracy" in v:
            v["verdict"] = verdict(v["words"], v["diff_accuracy"])
    return report


def verdicts(session: Session, sweep_id: int) -> dict:
    """A sweep's name, run counts and each variant's verdict in words (no curves: for the runs list's groups)."""
    r = _in_words(store.sweep_report(session, sweep_id, curves=False))
    return {"id": r["id"], "name": r["name"], "runs_total": r["runs_total"], "runs_finished": r["runs_finished"],
            "verdicts": [v["verdict"] for v in r["variants"] if v.get("verdict")]}


def report(session: Session, sweep_id: int) -> dict:
    """Each variant's runs, mean and std, and its seed-paired difference to the base; SweepNotFound if none."""
    return _in_words(store.sweep_report(session, sweep_id))


def recent(session: Session) -> list[tuple[Sweep, int, int]]:
    """The newest sweeps with their run counts (total, finished)."""
    return store.list_sweeps(session)
