"""The search driver: the database, not a process, moves a search along. One pass (under the searches lease) tells
Optuna how finished trial runs ended, asks for the next trials and queues them, stops a search most of whose trials
failed, and starts the verify sweep once the budget is spent. Worker task ends and every reconciler pass run it, so
a search survives a restarted web process or a dead worker; every step is idempotent."""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time

import optuna
from optuna.trial import TrialState
from sqlalchemy import Engine

from fitboard.app.core import search_space
from fitboard.app.core.errors import RecipeError
from fitboard.app.core.status import FINISHED, LIVE, RunStatus, SearchStatus
from fitboard.app.core.sweep_plan import BASE_KEY, variant_label, variant_specs
from fitboard.app.services import studies
from fitboard.app.services.queue import Publisher
from fitboard.app.services.recovery import publish_committed
from fitboard.app.services.sweeps import store_and_publish
from fitboard.app.store import searches as store
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import Run, Search
from fitboard.app.store.ownership import scope_session
from fitboard.app.store.runs import request_cancel
from fitboard.app.store.sweeps import store_sweep, sweep_report

log = logging.getLogger(__name__)
LEASE_TTL = 120.0  # a driver that dies mid-pass holds the lease this long at most
LEASE_WAIT = 15.0  # how long a finished trial's driver waits for another pass to end before leaving it to the next


def drive(engine: Engine, publisher: Publisher, search_ids: list[int] | None = None, wait: float = 0.0) -> None:
    """One driver pass over the given (default: every active) search, if the lease can be had within `wait` s."""
    if search_ids is None:
        with session_scope(engine) as session:
            search_ids = store.active_ids(session)
    if not search_ids:
        return  # the common case: a read, no lease taken
    holder = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
    deadline = time.monotonic() + wait
    while True:
        with session_scope(engine) as session:
            if store.take_lease(session, holder, LEASE_TTL):
                break
        if time.monotonic() >= deadline:
            return  # another pass is running; the next reconciler pass catches up
        time.sleep(0.5)
    try:
        for search_id in search_ids:
            try:
                _drive_one(engine, publisher, search_id)
            except Exception:  # one broken search must not stop the others
                log.exception("search %s: driver pass failed", search_id)
    finally:
        with session_scope(engine) as session:
            store.release_lease(session, holder)


def after_run(engine: Engine, publisher: Publisher, run: Run) -> None:
    """A trial run ended: drive its search now (its next trial need not wait for the reconciler)."""
    if run.search_id is None:
        return
    try:
        drive(engine, publisher, [run.search_id], wait=LEASE_WAIT)
    except Exception:  # the reconciler drives it later
        log.exception("search %s: driving after run %s failed", run.search_id, run.id)


def _drive_one(engine: Engine, publisher: Publisher, search_id: int) -> None:
    """Tell, stop, ask and verify for one search."""
    with session_scope(engine) as session:
        search = store.get_search(session, search_id)
        runs = store.trial_runs(session, search_id)
    publisher = Publisher(publisher.celery, queue=search.options.get("queue", publisher.queue))
    if search.status == SearchStatus.verifying:
        _check_verified(engine, search)
        return
    if search.status != SearchStatus.running:
        return
    study = studies.load_study(engine, search)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    _tell_finished(search, study, trials, runs)
    _adopt_orphans(engine, publisher, search, study, trials, runs)
    with session_scope(engine) as session:
        runs = store.trial_runs(session, search_id)
    failed = [r for r in runs if r.status == RunStatus.failed]
    budget = search.options["max_trials"]
    if 2 * len(failed) > budget:
        _stop_failing(engine, search, runs, failed)
        return
    live = sum(r.status in LIVE for r in runs)
    asked = asked_count(study)
    while live < search.options["max_parallel"] and asked < budget:
        outcome = _ask(engine, publisher, search, asked)
        if outcome == "exhausted":
            break
        live, asked = live + (outcome == "queued"), asked + 1
    if asked >= budget and live == 0:
        _start_verify(engine, publisher, search, studies.load_study(engine, search))


def asked_count(study: optuna.Study) -> int:
    """Trials handed out so far (enqueued ones wait for an ask and do not count)."""
    return sum(t.state != TrialState.WAITING for t in study.get_trials(deepcopy=False))


def _final_value(search: Search, run: Run) -> float | None:
    """A succeeded trial's metric from its result."""
    metrics = (run.result or {}).get("metrics") or {}
    value = metrics.get(search.options["metric"])
    return float(value) if value is not None else None


def _tell_finished(search: Search, study: optuna.Study, trials: dict, runs: list[Run]) -> None:
    """Every finished trial run whose Optuna trial still runs: tell Optuna how it ended."""
    for run in runs:
        trial = trials.get(run.trial_number)
        if trial is None or trial.state != TrialState.RUNNING or run.status not in FINISHED:
            continue
        value = _final_value(search, run) if run.status == RunStatus.succeeded else None
        if run.status == RunStatus.succeeded and value is not None:
            study.tell(trial.number, value, skip_if_finished=True)
        elif run.status == RunStatus.pruned:
            study.tell(trial.number, state=TrialState.PRUNED, skip_if_finished=True)
        else:
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)


def _queue_trial(engine: Engine, publisher: Publisher, search: Search, number: int, params: dict) -> str | None:
    """Store and publish the run of trial `number`; a recipe the params make invalid is stored failed (returned as
    the error) and Optuna is told the trial failed."""
    values = studies.decode(search.space, params)
    try:
        spec, error = search_space.apply(search.base, values), None
    except RecipeError as exc:
        spec = search.base
        error = "the space made an invalid recipe: " + "; ".join(f"{p['loc']}: {p['msg']}" for p in exc.problems)
    with session_scope(engine) as session:
        run = store.add_trial_run(session, search, number, spec, publisher.queue, error=error)
        if error is None:
            publish_committed(session, publisher, [run])
    return error


def _ask(engine: Engine, publisher: Publisher, search: Search, asked: int) -> str:
    """Ask the sampler for one more trial and queue its run: "queued"; "duplicate" when it repeats a configuration
    that already ended (told that trial's outcome, nothing trained: TPE repeats small categorical spaces); "exhausted"
    when the sampler has nothing left (a grid fully tried)."""
    study = studies.load_study(engine, search, salt=asked)
    try:
        trial = study.ask(studies.distributions(search.space))
    except RuntimeError:  # a grid sampler with every configuration tried
        return "exhausted"
    same = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
            if t.number != trial.number and t.params == trial.params]
    if same:
        trial.set_user_attr("duplicate_of", same[0].number)
        if same[0].state == TrialState.COMPLETE:
            study.tell(trial.number, same[0].value, skip_if_finished=True)
        else:
            study.tell(trial.number, state=TrialState.PRUNED, skip_if_finished=True)
        return "duplicate"
    error = _queue_trial(engine, publisher, search, trial.number, trial.params)
    if error is not None:
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
    return "queued"


def _adopt_orphans(engine: Engine, publisher: Publisher, search: Search, study: optuna.Study, trials: dict,
                   runs: list[Run]) -> None:
    """Trials Optuna handed out whose run was never stored (the driver died in between) get their run now."""
    have = {r.trial_number for r in runs}
    wanted = set(studies.distributions(search.space))
    for number, trial in trials.items():
        if trial.state != TrialState.RUNNING or number in have:
            continue
        if set(trial.params) == wanted:
            _queue_trial(engine, publisher, search, number, trial.params)
        else:  # died while suggesting: nothing to train
            study.tell(number, state=TrialState.FAIL, skip_if_finished=True)


def _stop_failing(engine: Engine, search: Search, runs: list[Run], failed: list[Run]) -> None:
    """Most of the budget failed: stop asking, cancel what is queued or running, and say why."""
    last = failed[-1].error or "no error recorded"
    reason = (f"{len(failed)} of at most {search.options['max_trials']} trials failed, so most of the search cannot "
              f"succeed; stopped. Last error (trial {failed[-1].trial_number}): {last[:500]}")
    with session_scope(engine) as session:
        for r in runs:
            if r.status in LIVE:
                request_cancel(session, r.id)
        store.set_state(session, search.id, SearchStatus.failed, reason)


def winners(search: Search, study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The top k completed trials, best first, one per distinct configuration."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None and "duplicate_of" not in t.user_attrs]
    done.sort(key=lambda t: t.value, reverse=search.options["direction"] == "maximize")
    out, seen = [], set()
    for t in done:
        key = json.dumps(t.params, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(t)
    return out[:search.options["k"]]


def verify_variants(search: Search, top: list) -> list[dict]:
    """The base recipe and each winner as sweep variants (a winner equal to the base is the base)."""
    variants, seen = [{"key": BASE_KEY, "label": "base", "overrides": {}}], {BASE_KEY}
    base = search.base
    for t in top:
        changes = search_space.overrides(base, studies.decode(search.space, t.params))
        changes = {p: v for p, v in changes.items() if search_space.get_path(base, p) != v}
        key = json.dumps(changes, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        variants.append({"key": key, "label": f"trial {t.number}: {variant_label(changes)}", "overrides": changes,
                         "trial": t.number, "search_value": t.value})
    return variants


def verify_seeds(search: Search) -> list[int]:
    """Fresh seeds: never the one the search trained with."""
    first = search.base.get("seed", 0) + 1
    return [(first + i) % 2**32 for i in range(search.options["seeds"])]


def _start_verify(engine: Engine, publisher: Publisher, search: Search, study: optuna.Study) -> None:
    """The budget is spent: the winners and the base recipe on fresh seeds, as an ordinary sweep."""
    top = winners(search, study)
    if not top:
        with session_scope(engine) as session:
            store.set_state(session, search.id, SearchStatus.failed,
                            "no trial completed, so there is nothing to verify")
        return
    variants = verify_variants(search, top)
    vary: dict = {}
    for v in variants:
        for path, value in v["overrides"].items():
            vary.setdefault(path, [])
            if value not in vary[path]:
                vary[path].append(value)
    specs = variant_specs(search.base, variants)
    with session_scope(engine) as session:
        # The verify sweep and its runs: the search's project and priority, launched by whoever launched the search.
        scope_session(session, search.project_id, search.launched_by)
        sweep = store_sweep(session, f"verify: {search.name}"[:200], search.base, vary, "grid", verify_seeds(search),
                            variants, search.options.get("priority", "normal"))
        store.set_state(session, search.id, SearchStatus.verifying, None, verify_sweep_id=sweep.id)
        store_and_publish(session, publisher, sweep, specs, sweep.seeds)
    log.info("search %s: budget spent; verify sweep %s started", search.id, sweep.id)


def _check_verified(engine: Engine, search: Search) -> None:
    """The verify sweep finished every run: the search is done."""
    with session_scope(engine) as session:
        if search.verify_sweep_id is None:
            store.set_state(session, search.id, SearchStatus.failed, "its verify sweep was deleted")
            return
        report = sweep_report(session, search.verify_sweep_id, curves=False)
        if report["runs_finished"] == report["runs_total"]:
            store.set_state(session, search.id, SearchStatus.done, None)
