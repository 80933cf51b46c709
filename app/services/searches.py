"""Searches as the API, the pages and the CLI use them: validate and start (the study, the base as its first trial,
the first trials queued), cancel, and report trials, best-so-far, budget and the verify sweep's verdicts."""
from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import optuna
from optuna.trial import TrialState
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import func, select
from sqlmodel import Session

from fitboard.app.core import search_space
from fitboard.app.core.errors import RecipeError
from fitboard.app.core.fairshare import check_priority
from fitboard.app.core.schemas import MAX_NAME, Name, problems_from
from fitboard.app.core.status import LIVE, SEARCH_ACTIVE, RunStatus, SearchStatus
from fitboard.app.core.variant_words import variant_name
from fitboard.app.services import search_driver, studies
from fitboard.app.services.queue import Publisher
from fitboard.app.services.runs import validate_recipe
from fitboard.app.store import searches as store
from fitboard.app.store.models import Run, Search, Worker, utcnow
from fitboard.app.store.runs import request_cancel
from fitboard.app.store.sweeps import sweep_report

log = logging.getLogger(__name__)
METRICS = {"accuracy": "maximize", "error_rate": "minimize", "valid_loss": "minimize"}
MAX_K = 8
MAX_VERIFY_SEEDS = 16
MIN_SEEDS = 3  # as for any sweep: fewer paired seeds give no interval
NAME = TypeAdapter(Name)


def _int(raw: dict, name: str, default: int | None, low: int, high: int) -> int | None:
    """An integer option within [low, high]; RecipeError naming it."""
    value = raw.get(name, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise RecipeError.one(name, f"give a whole number from {low} to {high}")
    return value


def check_options(raw: dict, base: dict, max_runs: int) -> dict:
    """A search's budget, metric, pruner, sampler and verify options, defaulted and bounded."""
    metric = raw.get("metric") or "accuracy"
    if metric not in METRICS:
        raise RecipeError.one("metric", f"one of {', '.join(METRICS)}")
    direction = raw.get("direction") or METRICS[metric]
    if direction not in ("maximize", "minimize"):
        raise RecipeError.one("direction", "maximize or minimize")
    pruner = raw.get("pruner") or "asha"
    if pruner not in studies.PRUNERS:
        raise RecipeError.one("pruner", f"one of {', '.join(studies.PRUNERS)}")
    sampler = raw.get("sampler") or "tpe"
    if sampler not in studies.SAMPLERS:
        raise RecipeError.one("sampler", f"one of {', '.join(studies.SAMPLERS)}")
    opts = {"metric": metric, "direction": direction, "pruner": pruner, "sampler": sampler,
            "max_trials": _int(raw, "max_trials", min(20, max_runs), 1, max_runs),
            "max_parallel": _int(raw, "max_parallel", None, 1, 256),
            "k": _int(raw, "k", 2, 1, MAX_K), "seeds": _int(raw, "seeds", 3, MIN_SEEDS, MAX_VERIFY_SEEDS),
            "min_resource": _int(raw, "min_resource", 1, 1, 1000),
            "reduction_factor": _int(raw, "reduction_factor", 3, 2, 10),
            "seed": _int(raw, "seed", base.get("seed", 0), 0, 2**32 - 1), "first": raw.get("first"),
            "priority": check_priority(raw.get("priority"))}
    verify_runs = (opts["k"] + 1) * opts["seeds"]
    if verify_runs > max_runs:
        raise RecipeError.one("seeds", f"the verify sweep would train {verify_runs} runs ((k + 1) x seeds); at most "
                                       f"{max_runs} are allowed (FITBOARD_MAX_SWEEP_RUNS)")
    unknown = sorted(set(raw) - set(opts) - {"name"})
    if unknown:
        raise RecipeError.one(unknown[0], "not a search option")
    return opts


def check_name(name, default: str) -> str:
    """The search's name: the default when none is given; RecipeError naming `name` when too long or holding
    control characters."""
    if name is None or name == "":
        return default
    try:
        return NAME.validate_python(name)
    except ValidationError as exc:
        raise RecipeError([{**p, "loc": "name"} for p in problems_from(exc)]) from None


def live_workers(session: Session, alive_within: float) -> int:
    """Workers that heartbeat within alive_within seconds."""
    cutoff = utcnow() - timedelta(seconds=alive_within)
    return session.exec(select(func.count()).select_from(Worker).where(Worker.last_seen >= cutoff)).scalar_one()


def create(session: Session, publisher: Publisher, base: dict, space: dict, options: dict, data_root: Path,
           max_runs: int, alive_within: float) -> Search:
    """Validate; store the search, create its Optuna study with the base recipe as the first trial (when the base
    lies in the space) and queue the first trials. max_parallel defaults to the live workers."""
    if not isinstance(options, dict):
        raise RecipeError.one("options", "give an object of search options")
    spec, _ = validate_recipe(session, base, data_root)
    base = spec.model_dump(mode="json")
    space = search_space.check_space(base, space)
    opts = check_options(options, base, max_runs)
    opts["first"] = search_space.check_first(space, opts["first"])
    if opts["sampler"] == "grid":
        search_space.check_grid(space)
    opts["queue"] = publisher.queue  # trials go where the search was sent, whichever process asks for them
    if opts["max_parallel"] is None:
        opts["max_parallel"] = max(1, live_workers(session, alive_within))
    name = check_name(options.get("name"), f"search: {spec.name}"[:MAX_NAME])
    search = store.store_search(session, name, base, space, opts)
    session.commit()  # Optuna writes through its own connections: nothing of ours may hold the SQLite write lock
    engine = session.get_bind()
    try:
        study = studies.create(studies.db_url(engine), search.study_name, opts["direction"])
        first = search_space.base_params(base, space)
        if first is not None:  # start from what the user has: ASHA then prunes what is clearly worse
            study.enqueue_trial(studies.encode(space, first))
        for params in opts["first"]:  # then what the user asked to try first
            study.enqueue_trial(studies.encode(space, params))
        study.set_user_attr("fitboard_search_id", search.id)
    except Exception as exc:
        store.set_state(session, search.id, SearchStatus.failed, f"could not create the Optuna study: {exc}")
        session.commit()
        raise
    search_driver.drive(engine, publisher, [search.id], wait=search_driver.LEASE_WAIT)
    session.expire_all()
    return store.get_search(session, search.id)


def cancel(session: Session, search_id: int, orphaned_after: float | None = None) -> Search:
    """Stop asking for trials; cancel the queued and running trials and verify runs."""
    search = store.get_search(session, search_id)
    ids = [r.id for r in store.trial_rows(session, search_id) if r.status in LIVE]
    if search.verify_sweep_id is not None:
        ids += session.exec(select(Run.id).where(Run.sweep_id == search.verify_sweep_id,
                                                 Run.status.in_(LIVE))).scalars().all()
    for run_id in ids:
        request_cancel(session, run_id, orphaned_after)
    if search.status in SEARCH_ACTIVE:
        store.set_state(session, search_id, SearchStatus.cancelled, "cancelled by its user")
    session.commit()
    session.expire_all()
    return store.get_search(session, search_id)


def _rung(trial: optuna.trial.FrozenTrial) -> int | None:
    """The successive-halving rung a pruned trial stopped at (Optuna records each rung a trial reached)."""
    rungs = [int(k.rsplit("_", 1)[1]) for k in trial.system_attrs if k.startswith("completed_rung_")]
    return max(rungs) if rungs else None


def _trials(session: Session, search: Search, frozen: list) -> list[dict]:
    """Each trial: its run, params, status, epochs trained, final metric, curve, and where a pruned one stopped."""
    runs = {r.trial_number: r for r in store.trial_rows(session, search.id)}
    ids = [r.id for r in runs.values()]
    trained = store.epochs_trained(session, ids)
    curves = store.metric_curves(session, ids, search.options["metric"])
    out = []
    for t in frozen:
        if t.state == TrialState.WAITING:
            continue  # enqueued (the base, the user's first configurations), not asked yet
        run = runs.get(t.number)
        epochs, seconds = trained.get(run.id, (0, 0.0)) if run else (0, 0.0)
        dup = t.user_attrs.get("duplicate_of")
        entry = {"number": t.number, "run_id": run.id if run else None, "state": t.state.name.lower(),
                 "status": run.status if run else ("duplicate" if dup is not None else "asked"), "duplicate_of": dup,
                 "params": studies.decode(search.space, t.params),
                 "value": t.value, "epochs": epochs, "seconds": seconds,
                 "curve": curves.get(run.id, []) if run else [], "error": run.error if run else None,
                 "pruned": None}
        if run is not None and run.status == RunStatus.pruned:
            where = run.pruned or {}
            entry["pruned"] = {"epoch": where.get("step", epochs), "rung": _rung(t),
                               "value": where.get("value")}
        out.append(entry)
    return out


def _best_so_far(trials: list[dict], maximize: bool) -> list[dict]:
    """After each completed trial (in trial order), the best final metric so far."""
    best, out = None, []
    for t in trials:
        if t["state"] == "complete" and t["value"] is not None:
            if best is None or (t["value"] > best if maximize else t["value"] < best):
                best = t["value"]
            out.append({"number": t["number"], "best": best})
    return out


def _budget(search: Search, trials: list[dict]) -> dict:
    """Epochs and seconds trained against training every asked trial, and the full grid, to the end."""
    per_run = studies.total_epochs(search.base)
    trained = sum(t["epochs"] for t in trials)
    seconds = sum(t["seconds"] for t in trials)
    per_epoch = seconds / trained if trained else None
    grid = search_space.grid_size(search.space)
    return {"epochs_trained": trained, "seconds_trained": seconds, "epochs_per_trial": per_run,
            "trials": len(trials), "epochs_if_all_full": len(trials) * per_run,
            "grid_size": grid, "epochs_full_grid": grid * per_run if grid is not None else None,
            "seconds_full_grid": grid * per_run * per_epoch if grid is not None and per_epoch else None,
            "fraction_of_full_grid": trained / (grid * per_run) if grid else None}


def _verify(session: Session, search: Search) -> dict | None:
    """The verify sweep's verdicts, each winner's search metric beside its verified mean."""
    if search.verify_sweep_id is None:
        return None
    report = sweep_report(session, search.verify_sweep_id, curves=False)
    base = next((v for v in report["variants"] if v["key"] == "{}"), None)
    winners = []
    for v in report["variants"]:
        if "trial" not in v:
            continue
        diff = v.get("diff_accuracy") or {}
        beat = None if diff.get("low") is None else diff["low"] > 0
        winners.append({"trial": v["trial"], "label": v["label"], "words": variant_name(v, report["base"]),
                        "search_value": v.get("search_value"),
                        "verified": v["accuracy"], "verdict": v.get("verdict"), "beat_base": beat,
                        "did_not_beat_base": diff.get("low") is not None and not diff["low"] > 0})
    return {"sweep_id": report["id"], "seeds": report["seeds"], "runs_total": report["runs_total"],
            "runs_finished": report["runs_finished"], "base": base["accuracy"] if base else None,
            "winners": winners, "metric": "accuracy"}


def importances(search: Search, study: optuna.Study, frozen: list) -> dict:
    """Optuna's parameter importances (fANOVA) once two trials completed; {} before or if it cannot tell."""
    done = [t for t in frozen if t.state == TrialState.COMPLETE]
    if len(done) < 2 or len(search.space) < 2:
        return {}
    try:
        return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
    except Exception as exc:  # too few distinct values, a single-valued param: nothing to say
        log.info("search %s: no importances (%s)", search.id, exc)
        return {}


def report(session: Session, search_id: int, with_importance: bool = False) -> dict:
    """A search in full: options, trials, best, best-so-far, budget and its verify sweep."""
    search = store.get_search(session, search_id)
    study = studies.read_study(session.get_bind(), search)
    frozen = studies.report_trials(session.get_bind(), search)
    trials = _trials(session, search, frozen)
    maximize = search.options["direction"] == "maximize"
    done = [t for t in trials if t["state"] == "complete" and t["value"] is not None]
    best = (max if maximize else min)(done, key=lambda t: t["value"]) if done else None
    counts = {s: sum(t["status"] == s for t in trials) for s in {t["status"] for t in trials}}
    return {"id": search.id, "name": search.name, "status": search.status, "reason": search.reason,
            "study_name": search.study_name, "base": search.base, "space": search.space, "options": search.options,
            "created_at": search.created_at.isoformat(),
            "finished_at": search.finished_at.isoformat() if search.finished_at else None,
            "trials": trials, "counts": counts, "best": best, "best_so_far": _best_so_far(trials, maximize),
            "budget": _budget(search, trials), "verify": _verify(session, search),
            "importance": importances(search, study, frozen) if with_importance else None}


def recent(session: Session) -> list[Search]:
    """The newest searches."""
    return store.list_searches(session)
