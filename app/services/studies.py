"""Optuna, as fitboard uses it, in one module: the RDB storage in fitboard's own database, a search's study with the
sampler and pruner it asked for, a trial by number, and a space as Optuna distributions. The web process asks
(sampler); the worker reports and asks the pruner."""
from __future__ import annotations

import json
import logging
import math
import threading
from types import SimpleNamespace

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution, json_to_distribution
from optuna.trial import TrialState
from sqlalchemy import Engine, text

from fitboard.app.core.search_space import MAX_GRID, grid_size
from fitboard.app.store.db import driver_url, sqlite_events
from fitboard.app.store.models import Search

optuna.logging.set_verbosity(optuna.logging.WARNING)  # a line per trial would flood the worker's log
log = logging.getLogger(__name__)
PRUNERS = ("asha", "hyperband", "median", "none")
SAMPLERS = ("tpe", "random", "grid")
_storages: dict[str, optuna.storages.RDBStorage] = {}
_lock = threading.Lock()


def storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage on fitboard's database, one per process (it creates its tables on first use); SQLite
    connections get fitboard's pragmas so Optuna's writes queue on the lock like every other write."""
    url = driver_url(url)
    with _lock:
        if url not in _storages:
            sqlite = url.startswith("sqlite")
            kwargs = {"connect_args": {"timeout": 30}} if sqlite else {"pool_pre_ping": True}
            try:
                st = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
            except Exception:  # two processes creating Optuna's tables at once: the second sees them the next time
                log.info("optuna storage: retrying after a concurrent table creation")
                st = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
            if sqlite:
                sqlite_events(st.engine)
                st.engine.dispose()  # pooled connections were opened before the pragmas were attached
            _storages[url] = st
        return _storages[url]


def pruner(options: dict, total_epochs: int) -> optuna.pruners.BasePruner:
    """The pruner a search asked for; the step is the run's epoch counted across stages (0-based)."""
    kind, rf, min_r = options["pruner"], options["reduction_factor"], options["min_resource"]
    if kind == "asha":  # Optuna's successive halving is asynchronous: ASHA
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=min_r, reduction_factor=rf)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=min_r, max_resource=max(total_epochs, min_r + 1),
                                              reduction_factor=rf)
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    return optuna.pruners.NopPruner()


def distributions(space: dict) -> dict:
    """Each searched field as an Optuna distribution; choices that are not plain values travel as JSON text."""
    out = {}
    for path, dist in space.items():
        kind, values = next(iter(dist.items()))
        if kind == "choices":
            out[path] = CategoricalDistribution([_encode(v) for v in values] if _needs_json(values) else values)
        elif kind == "int":
            out[path] = IntDistribution(values[0], values[1])
        else:
            out[path] = FloatDistribution(values[0], values[1], log=kind == "log")
    return out


def _needs_json(values: list) -> bool:
    """Lists and dicts (an lr of [low, high]) cannot be Optuna categories; every choice of such a field is JSON."""
    return any(isinstance(v, (list, dict)) for v in values)


def _encode(v) -> str:
    return json.dumps(v, sort_keys=True)


def encode(space: dict, params: dict) -> dict:
    """Recipe values as Optuna params (for enqueueing the base recipe)."""
    out = {}
    for path, value in params.items():
        values = space[path].get("choices")
        out[path] = _encode(value) if values is not None and _needs_json(values) else value
    return out


def decode(space: dict, params: dict) -> dict:
    """Optuna params as recipe values."""
    out = {}
    for path, value in params.items():
        values = space.get(path, {}).get("choices")
        out[path] = json.loads(value) if values is not None and _needs_json(values) else value
    return out


def sampler(options: dict, space: dict, salt: int) -> optuna.samplers.BaseSampler:
    """A fresh sampler for one ask: the driver keeps no process alive between asks, so the seed moves with the
    number of trials asked (salt), or every ask would draw the same configuration."""
    seed = (options["seed"] * 100_003 + salt) % 2**32
    if options["sampler"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if options["sampler"] == "grid" and (grid_size(space) or MAX_GRID + 1) <= MAX_GRID:
        grid = {p: (list(range(d["int"][0], d["int"][1] + 1)) if "int" in d else distributions({p: d})[p].choices)
                for p, d in space.items()}
        return optuna.samplers.GridSampler(grid, seed=options["seed"])
    if options["sampler"] == "grid":  # stored before grids were bounded: listing it would take minutes and GBs
        log.warning("a grid of more than %s configurations: sampling it at random instead", MAX_GRID)
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=options.get("startup_trials", 4))


def load(url: str, study_name: str, options: dict, space: dict, total_epochs: int, salt: int = 0) -> optuna.Study:
    """The search's study with its sampler and pruner."""
    return optuna.load_study(study_name=study_name, storage=storage(url), sampler=sampler(options, space, salt),
                             pruner=pruner(options, total_epochs))


def load_to_read(url: str, study_name: str) -> optuna.Study:
    """The study for reading its trials: a random sampler and no pruner, both free to build."""
    return optuna.load_study(study_name=study_name, storage=storage(url), sampler=optuna.samplers.RandomSampler(),
                             pruner=optuna.pruners.NopPruner())


def create(url: str, study_name: str, direction: str) -> optuna.Study:
    """A new study for a search (direction: maximize or minimize)."""
    return optuna.create_study(study_name=study_name, storage=storage(url), direction=direction)


def db_url(engine: Engine) -> str:
    """The engine's URL with its password (Optuna opens its own connections)."""
    return engine.url.render_as_string(hide_password=False)


def total_epochs(spec: dict) -> int:
    """Epochs a recipe trains, all stages (the pruner's largest resource)."""
    return sum(int(s["epochs"]) for s in spec["stages"])


def load_study(engine: Engine, search: Search, salt: int = 0) -> optuna.Study:
    """The search's Optuna study with its sampler and pruner, on the engine's database."""
    return load(db_url(engine), search.study_name, search.options, search.space, total_epochs(search.base), salt)


def read_study(engine: Engine, search: Search) -> optuna.Study:
    """The search's study to read (trials, importances): no sampler or pruner is built, so a report never lists
    a grid."""
    return load_to_read(db_url(engine), search.study_name)


def trial(engine: Engine, search: Search, number: int) -> optuna.Trial:
    """Trial `number` of the search's study, live: report() and should_prune() go to the database."""
    rdb = storage(db_url(engine))
    study_id = rdb.get_study_id_from_name(search.study_name)
    return optuna.trial.Trial(load_study(engine, search), rdb.get_trial_id_from_study_id_trial_number(study_id, number))


def report_trials(engine: Engine, search: Search) -> list[SimpleNamespace]:
    """The study's trials as a search's report reads them (number, state, value, params, user and system attributes)
    in five queries on Optuna's tables, without the per-epoch intermediate values Optuna's own reader loads too (a
    thousand trials' twenty thousand rows: most of a second); trial order."""
    study_id = storage(db_url(engine)).get_study_id_from_name(search.study_name)
    trials_of = "trial_id IN (SELECT trial_id FROM trials WHERE study_id = :s)"
    with engine.connect() as conn:
        def rows(sql: str) -> list:
            return conn.execute(text(sql), {"s": study_id}).all()
        out = {tid: SimpleNamespace(number=number, state=TrialState[state], value=None, params={}, user_attrs={},
                                    system_attrs={})
               for tid, number, state in rows("SELECT trial_id, number, state FROM trials WHERE study_id = :s")}
        for tid, value, kind in rows(f"SELECT trial_id, value, value_type FROM trial_values WHERE {trials_of} "
                                     "AND objective = 0"):
            out[tid].value = {"INF_POS": math.inf, "INF_NEG": -math.inf}.get(kind, value)
        # in the order the trial suggested them (as Optuna's own reader gives them): the words follow that order
        for tid, name, value, dist in rows("SELECT trial_id, param_name, param_value, distribution_json FROM "
                                           f"trial_params WHERE {trials_of} ORDER BY param_id"):
            out[tid].params[name] = json_to_distribution(dist).to_external_repr(value)
        for table, attr in (("trial_user_attributes", "user_attrs"), ("trial_system_attributes", "system_attrs")):
            for tid, key, value in rows(f"SELECT trial_id, key, value_json FROM {table} WHERE {trials_of}"):
                getattr(out[tid], attr)[key] = json.loads(value)
    return sorted(out.values(), key=lambda t: t.number)
