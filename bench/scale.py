"""The runs list at scale: fill a database with N runs (20 epoch rows each) by bulk insert, then time every list,
filter and sort, the pages and the epoch write through a real `fitboard web` process over HTTP.

    python bench/scale.py --runs 100000 [--db sqlite|postgres] [--requests 30] [--keep]
    python bench/scale.py --runs 1000000 --fill-only sqlite:////tmp/big.db     # fill, migrate and exit
    python bench/scale.py --runs 1000000 --fill-only sqlite:////tmp/base.db --base   # fill at 0008 and exit
    cp /tmp/base.db /tmp/big.db && python bench/scale.py --runs 1000000 --migrate sqlite:////tmp/big.db
    python bench/scale.py --use sqlite:////tmp/big.db --runs 1000000                  # ask a filled database again
    python bench/scale.py --pair sqlite:////tmp/2k.db sqlite:////tmp/200k.db          # two sizes side by side
    python bench/scale.py --runs 100000 --peer mlflow   # then MLflow on the same runs (bench/scale_mlflow.py)

The fill writes the schema of revision 0008 (tags as ",x," in run.tags), then migrates to the head and times it: that
is the migration of an existing database of N runs. 10% of runs are tagged x; names run-0 ... run-{N-1}; statuses,
datasets, sweeps (one of 500 runs) and searches mixed in; accuracies spread over [0, 1]. PostgreSQL: a database
fb_scale_<N> on FITBOARD_BENCH_POSTGRES (default postgresql://postgres@127.0.0.1:5432/postgres), dropped at the end
unless --keep. Targets at 1M runs: list questions p50 <= 20 ms and p95 <= 50 ms, the runs page <= 100 ms, the epoch
write p50 <= 1 ms, the migration under 2 minutes; at 200,000 runs each question within 2x of its time at 2,000 (--pair)
and page 41 by cursor as fast as the first page.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import re
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from web import cpu_times, fitboard_env, free_port, percentile, spawn, stop_process, wait_http  # noqa: E402

from fitboard.app.core.events import EpochEvent  # noqa: E402
from fitboard.app.store.db import make_engine, session_scope, upgrade  # noqa: E402
from fitboard.app.store.runs import record_epoch  # noqa: E402

EPOCHS = 20
DATASETS = ("digits", "cassava", "pets", "imagenette", "food101")
# status, share: mostly finished, a few live
STATUSES = (("succeeded", 0.70), ("failed", 0.10), ("cancelled", 0.05), ("pruned", 0.07), ("queued", 0.07),
            ("running", 0.01))
SWEEP_SIZE, SWEEP_SHARE, BIG_SWEEP, SEARCH_TRIALS = 10, 0.05, 500, 1000
PG_ADMIN = os.environ.get("FITBOARD_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
SPEC = {"dataset": "digits", "arch": "resnet18", "pretrained": False, "normalize": "imagenet", "seed": 0,
        "precision": "fp32", "keep_best": "accuracy", "tta": {"n": 4, "use_max": False},
        "stages": [{"epochs": 15, "size": 64, "presize": 80, "bs": 64, "freeze": True, "lr": "find"},
                   {"epochs": 5, "size": 64, "presize": 80, "bs": 64, "freeze": False, "lr": [1e-5, 1e-3]}]}
RUN_COLUMNS = ("id", "name", "dataset", "spec", "status", "cancel_requested", "created_at", "started_at",
               "finished_at", "worker", "attempt", "result", "techniques", "best_accuracy", "tta_accuracy", "sweep_id",
               "variant", "search_id", "trial_number", "queue", "published_at", "republish_count", "notes", "tags",
               "archived", "kind")
EPOCH_COLUMNS = ("run_id", "stage", "epoch", "train_loss", "valid_loss", "metrics", "seconds", "created_at")
CHUNK = 20_000  # runs per insert batch
SEARCH_SPACE = {"stages[0].lr": {"log": [1e-5, 1e-1]}}
SEARCH_OPTIONS = {"metric": "accuracy", "direction": "maximize", "pruner": "asha", "sampler": "tpe",
                  "max_trials": SEARCH_TRIALS, "max_parallel": 4, "k": 2, "seeds": 3, "min_resource": 1,
                  "reduction_factor": 3, "seed": 0, "first": None}
STUDY = "bench-study-1"
ONLY = ""  # --only: a regular expression the asked questions' labels match
OTHER_SHARE = 10  # after the migration, every 10th run (id % 10 == 7) moves to the project "other"


# --- the rows ----------------------------------------------------------------------------------------------------


def _status(rng: random.Random) -> str:
    """A status drawn with the shares of STATUSES."""
    x, acc = rng.random(), 0.0
    for status, share in STATUSES:
        acc += share
        if x < acc:
            return status
    return "succeeded"


def _when(t: datetime) -> str:
    """A naive-UTC timestamp as both databases store it."""
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")


def sweep_of(i: int, n: int) -> tuple[int | None, str | None]:
    """(sweep id, variant) of run i: the big sweep sits in the middle; small sweeps take SWEEP_SHARE of the rest."""
    mid = n // 2
    if n >= 2 * BIG_SWEEP and mid <= i < mid + BIG_SWEEP:
        return 1, "base" if (i - mid) % 5 == 0 else f"lr={(i - mid) % 5}"
    block = i // SWEEP_SIZE
    if (block * 2654435761) % 1000 < SWEEP_SHARE * 1000:
        return 2 + block, "base" if i % SWEEP_SIZE < 5 else "lr=1"
    return None, None


def search_of(i: int, n: int) -> tuple[int | None, int | None]:
    """(search id, trial number): the last trials_of(n) runs before the newest 10% are one search's trials."""
    first = max(0, int(n * 0.9) - trials_of(n))
    return (1, i - first) if first <= i < first + trials_of(n) else (None, None)


def trials_of(n: int) -> int:
    """The search's trials among n runs: SEARCH_TRIALS, or a quarter of the runs below 4,000 (so a small level asks
    the same search=1 question as a large one)."""
    return min(SEARCH_TRIALS, n // 4)


def run_rows(lo: int, hi: int, n: int, t0: datetime):
    """Run rows lo..hi-1 (ids 1-based) as tuples of RUN_COLUMNS."""
    spec_tail = json.dumps(SPEC)[1:]
    for i in range(lo, hi):
        rng = random.Random(i)
        status = _status(rng)
        created = t0 + timedelta(seconds=30 * i)
        finished = status in ("succeeded", "failed", "cancelled", "pruned")
        acc = rng.random() if status in ("succeeded", "pruned") else None
        tta = min(1.0, acc + rng.random() * 0.02) if acc is not None and status == "succeeded" else None
        sweep, variant = sweep_of(i, n)
        search, trial = search_of(i, n)
        spec = '{"name": "run-%d", "seed": %d, %s' % (i, i % 7, spec_tail.replace('"seed": 0, ', ""))
        result = (json.dumps({"metrics": {"accuracy": acc, "error_rate": 1 - acc, "valid_loss": 1 - acc},
                              "tta": {"accuracy": tta, "error_rate": 1 - tta} if tta is not None else None,
                              "best": {"stage": 1, "epoch": 4, "value": acc}}) if acc is not None else None)
        yield (i + 1, f"run-{i}", DATASETS[rng.randrange(len(DATASETS))], spec, status, False, _when(created),
               _when(created + timedelta(seconds=5)) if status != "queued" else None,
               _when(created + timedelta(seconds=600)) if finished else None,
               "bench:1" if status != "queued" else None, 0 if status == "queued" else 1, result,
               '["lr_find", "tta"]', acc, tta, sweep, variant, search, trial, "fitboard",
               _when(created), 0, "", ",x," if i % 10 == 3 else "", i % 97 == 0, "queued")


def epoch_rows(lo: int, hi: int, t0: datetime):
    """EPOCHS rows per run for runs lo..hi-1 (15 in stage 0, 5 in stage 1), accuracy rising to the run's own."""
    for i in range(lo, hi):
        created = t0 + timedelta(seconds=30 * i)
        for k in range(EPOCHS):
            stage, epoch = (0, k) if k < 15 else (1, k - 15)
            acc = round(0.3 + 0.6 * k / EPOCHS, 4)
            yield (i + 1, stage, epoch, round(1.5 - k * 0.05, 4), round(1.6 - k * 0.05, 4),
                   '{"accuracy": %s, "error_rate": %s}' % (acc, round(1 - acc, 4)), 12.5,
                   _when(created + timedelta(seconds=30 * k)))


# --- filling -----------------------------------------------------------------------------------------------------


def sweeps_and_search(n: int, t0: datetime) -> tuple[list[tuple], list[tuple]]:
    """Rows of the sweep table (the big one first) and of the search table."""
    variants = [{"key": "base", "label": "base", "overrides": {}}] + [
        {"key": f"lr={k}", "label": f"lr {k}", "overrides": {"stages[0].lr": 10 ** -k}} for k in range(1, 5)]
    sweeps = {sweep_of(i, n)[0] for i in range(n)} - {None}
    rows = [(s, f"sweep-{s}", json.dumps(SPEC), json.dumps({"stages[0].lr": [0.1, 0.01]}), "one_at_a_time",
             json.dumps(list(range(100 if s == 1 else 5))), json.dumps(variants if s == 1 else variants[:2]),
             _when(t0)) for s in sorted(sweeps)]
    search = [(1, "search-1", json.dumps(SPEC), json.dumps(SEARCH_SPACE), json.dumps(SEARCH_OPTIONS),
               STUDY, "done", _when(t0))]
    return rows, search


SWEEP_COLUMNS = ("id", "name", "base", "vary", "mode", "seeds", "variants", "created_at")
SEARCH_COLUMNS = ("id", "name", "base", "space", "options", "study_name", "status", "created_at")


def fill_start(n: int) -> datetime:
    """When run 0 of an n-run fill was created (naive UTC): runs 30 s apart, the newest an hour ago."""
    return datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(seconds=30 * n + 3600)


def fill_sqlite(path: Path, n: int, t0: datetime) -> None:
    """Bulk insert into a SQLite file at revision 0008 (one transaction per CHUNK runs, fsync off while filling)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA journal_mode = WAL")
    sweeps, search = sweeps_and_search(n, t0)

    def insert(table, cols, rows):
        conn.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)

    conn.execute("BEGIN")
    insert("sweep", SWEEP_COLUMNS, sweeps)
    insert("search", SEARCH_COLUMNS, search)
    conn.execute("COMMIT")
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        conn.execute("BEGIN")
        insert("run", RUN_COLUMNS, run_rows(lo, hi, n, t0))
        insert("epoch", EPOCH_COLUMNS, epoch_rows(lo, hi, t0))
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _copy(cur, table: str, cols: tuple, rows) -> None:
    """COPY rows into table (tab-separated, \\N for NULL)."""
    buf = io.StringIO()
    for r in rows:
        buf.write("\t".join("\\N" if v is None else ("t" if v is True else "f" if v is False else str(v))
                            for v in r) + "\n")
    buf.seek(0)
    cur.copy_expert(f"COPY {table} ({', '.join(cols)}) FROM STDIN", buf)


def fill_postgres(url: str, n: int, t0: datetime) -> None:
    """Bulk insert into a PostgreSQL database at revision 0008 by COPY, then move the id sequences past the rows."""
    import psycopg2

    conn = psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://"))
    cur = conn.cursor()
    sweeps, search = sweeps_and_search(n, t0)
    _copy(cur, "sweep", SWEEP_COLUMNS, sweeps)
    _copy(cur, "search", SEARCH_COLUMNS, search)
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        _copy(cur, "run", RUN_COLUMNS, run_rows(lo, hi, n, t0))
        _copy(cur, "epoch", EPOCH_COLUMNS, epoch_rows(lo, hi, t0))
        conn.commit()
    for table in ("run", "sweep", "search"):
        cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
    conn.commit()
    conn.close()


def new_database(kind: str, n: int, work: Path) -> str:
    """A fresh, empty database URL for the fill."""
    if kind == "sqlite":
        return f"sqlite:///{work / f'scale-{n}.db'}"
    import psycopg2

    name = f"fb_scale_{n}"
    conn = psycopg2.connect(PG_ADMIN)
    conn.autocommit = True
    conn.cursor().execute(f"DROP DATABASE IF EXISTS {name}")
    conn.cursor().execute(f"CREATE DATABASE {name}")
    conn.close()
    return PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg2://") + "/" + name


def fill(url: str, n: int, migrate: bool = True) -> tuple[float, float | None]:
    """Migrate url to 0008, bulk-insert n runs, then (migrate) migrate to the head; (fill seconds, migration
    seconds)."""
    t0 = fill_start(n)
    upgrade(url, "0008")
    start = time.perf_counter()
    if url.startswith("sqlite"):
        fill_sqlite(Path(url.split("///", 1)[1]), n, t0)
    else:
        fill_postgres(url, n, t0)
    filled = time.perf_counter() - start
    return filled, (migrate_filled(url, n) if migrate else None)


def migrate_filled(url: str, n: int) -> float:
    """Migrate a database filled at 0008 to the head (timed: the migration of an existing database of n runs), then
    add the second project and the search's study; the migration's seconds."""
    start = time.perf_counter()
    upgrade(url)
    migrated = time.perf_counter() - start
    projects_and_study(url, n)
    if url.startswith("postgresql"):  # what autovacuum does to a live database: index-only scans need it
        import psycopg2

        conn = psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://"))
        conn.autocommit = True
        conn.cursor().execute("VACUUM ANALYZE")
        conn.close()
    return migrated


def projects_and_study(url: str, n: int) -> None:
    """After the migration: a second project holding every 10th run (their tags too) and the search's Optuna study
    with one complete trial per trial run (what the search page reads). No person: the bench's web stays the
    zero-config local admin (the API has no filter by person)."""
    import optuna
    import sqlalchemy as sa

    from fitboard.app.services import studies

    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO project (id, name, created_at) VALUES (2, 'other', CURRENT_TIMESTAMP)"))
        conn.execute(sa.text(f"UPDATE run SET project_id = 2 WHERE id % {OTHER_SHARE} = 7 AND search_id IS NULL "
                             "AND sweep_id IS NULL"))
        conn.execute(sa.text("UPDATE run_tag SET project_id = 2 WHERE run_id IN "
                             "(SELECT id FROM run WHERE project_id = 2)"))
        if url.startswith("postgresql"):
            conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('project', 'id'), 2)"))
    engine.dispose()
    if not trials_of(n):
        return
    rng = random.Random(7)
    study = optuna.create_study(study_name=STUDY, storage=studies.storage(url), direction="maximize")
    dist = studies.distributions(SEARCH_SPACE)
    study.add_trials([optuna.trial.create_trial(
        params={"stages[0].lr": 10 ** -(1 + 4 * rng.random())}, distributions=dist, value=rng.random(),
        intermediate_values={k: 0.3 + 0.03 * k for k in range(EPOCHS)}) for _ in range(trials_of(n))])


# --- asking ------------------------------------------------------------------------------------------------------


def timed(client: httpx.Client, path: str, params: dict | None, k: int, pid: int) -> tuple[list[float], float]:
    """k timings (ms) of GET path after one warm-up (each answer must be 200), and the server's CPU ms per request:
    on a busy machine wall time also counts waiting for a core, CPU time does not."""
    out = []
    for i in range(k + 1):
        if i == 1:
            cpu0 = sum(cpu_times(pid))
        t = time.perf_counter()
        r = client.get(path, params=params)
        ms = (time.perf_counter() - t) * 1000
        if r.status_code != 200:
            raise RuntimeError(f"{path} {params}: {r.status_code} {r.text[:300]}")
        if i:
            out.append(ms)
    return out, (sum(cpu_times(pid)) - cpu0) * 1000 / k


def cursor_41(client: httpx.Client, **params) -> str:
    """The cursor of page 41 of the newest 50 (or of params' order; walked page by page)."""
    cursor = None
    for _ in range(40):
        cursor = client.get("/api/v1/runs", params={"limit": 50, **params, **({"cursor": cursor} if cursor else {})}
                            ).json()["next_cursor"]
    return cursor


def questions(client: httpx.Client, n: int) -> list[tuple[str, str, dict | None, str]]:
    """(label, path, params, kind) of every question; kind list|page|other sets the target."""
    first = client.get("/api/v1/runs", params={"limit": 1, "status": "succeeded"}).json()["items"][0]["id"]
    ids = [r["id"] for r in client.get("/api/v1/runs", params={"limit": 100, "status": "succeeded"}).json()["items"]]
    big_sweep = 1 if n >= 2 * BIG_SWEEP else 2
    qs = [("newest 50", "/api/v1/runs", {"limit": 50}, "list"),
          ("best 50 by accuracy", "/api/v1/runs", {"limit": 50, "order": "-best_accuracy"}, "list"),
          ("best 50 by TTA accuracy", "/api/v1/runs", {"limit": 50, "order": "-tta_accuracy"}, "list"),
          ("status=failed", "/api/v1/runs", {"limit": 50, "status": "failed"}, "list"),
          ("project=other (a tenth of runs)", "/api/v1/runs", {"limit": 50, "project": "other"}, "list"),
          ("project=other by accuracy", "/api/v1/runs", {"limit": 50, "project": "other", "order": "-best_accuracy"},
           "list"),
          ("status=running", "/api/v1/runs", {"limit": 50, "status": "running"}, "list"),
          ("dataset=pets", "/api/v1/runs", {"limit": 50, "dataset": "pets"}, "list"),
          ("tag=x", "/api/v1/runs", {"limit": 50, "tag": "x"}, "list"),
          ("tag=x by accuracy", "/api/v1/runs", {"limit": 50, "tag": "x", "order": "-best_accuracy"}, "list"),
          ("search=1 (its trials)", "/api/v1/runs", {"limit": 50, "search": 1}, "list"),
          (f"sweep={big_sweep}", "/api/v1/runs", {"limit": 50, "sweep": big_sweep}, "list"),
          (f"name=run-{n // 3}", "/api/v1/runs", {"limit": 50, "name": f"run-{n // 3}"}, "list"),
          ("name=un-1 (many match)", "/api/v1/runs", {"limit": 50, "name": "un-1"}, "list"),
          ("failed by name, archived shown", "/api/v1/runs",
           {"limit": 50, "status": "failed", "order": "name", "archived": "show"}, "list"),
          ("page 41 by cursor", "/api/v1/runs", {"limit": 50, "cursor": cursor_41(client)}, "list"),
          ("page 41 by accuracy, by cursor", "/api/v1/runs",
           {"limit": 50, "order": "-best_accuracy", "cursor": cursor_41(client, order="-best_accuracy")}, "list"),
          ("offset=5000", "/api/v1/runs", {"limit": 50, "offset": 5000}, "list"),
          ("runs page (HTML)", "/runs", None, "page"),
          ("runs page sorted by accuracy", "/runs", {"order": "-best_accuracy"}, "page"),
          ("run page (HTML)", f"/runs/{first}", None, "page"),
          ("run's epochs", f"/api/v1/runs/{first}/epochs", None, "other"),
          ("compare 2 runs", "/api/v1/compare", {"ids": ",".join(map(str, ids[:2]))}, "other"),
          ("compare 100 runs", "/api/v1/compare", {"ids": ",".join(map(str, ids[:100]))}, "other"),
          (f"sweep page ({BIG_SWEEP if big_sweep == 1 else SWEEP_SIZE} runs)", f"/sweeps/{big_sweep}", None, "other")]
    if n >= 4 * SEARCH_TRIALS:
        qs.append((f"search page ({SEARCH_TRIALS} trials)", "/searches/1", None, "other"))
    return [q for q in qs if re.search(ONLY, q[0])]


def epoch_write_ms(url: str, k: int) -> tuple[list[float], float]:
    """k timings (ms) of one epoch row written and committed the way a worker does (store.record_epoch), and the
    CPU ms each took in this process."""
    engine = make_engine(url)
    with session_scope(engine) as s:
        run_id = s.exec(__import__("sqlalchemy").text("SELECT max(id) FROM run")).scalar_one()
    out, cpu0 = [], time.process_time()
    for i in range(k):
        row = EpochEvent(stage=5, epoch=i, train_loss=0.5, valid_loss=0.6, metrics={"accuracy": 0.9}, seconds=1.0)
        t = time.perf_counter()
        with session_scope(engine) as s:
            record_epoch(s, run_id, row)
        out.append((time.perf_counter() - t) * 1000)
    cpu = (time.process_time() - cpu0) * 1000 / k
    with session_scope(engine) as s:  # the run's page and epochs are questions: leave it its 20 rows
        s.exec(__import__("sqlalchemy").text("DELETE FROM epoch WHERE run_id = :r AND stage = 5").bindparams(r=run_id))
    engine.dispose()
    return out, cpu


TARGETS = {"list": (20, 50), "page": (100, None), "other": (None, None)}
DEEP = (("newest 50", "page 41 by cursor"), ("best 50 by accuracy", "page 41 by accuracy, by cursor"))


@contextlib.contextmanager
def web(url: str, work: Path, tag: str = ""):
    """A `fitboard web` on url for as long as the block runs: (client, server pid)."""
    port = free_port() if tag else int(os.environ.get("FITBOARD_BENCH_PORT") or free_port())
    log = work / f"web{tag}.log"
    proc = spawn(["web", "--port", str(port)], fitboard_env(work / f"home{tag}", url, work / "data"), log)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc, log, timeout=300)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            yield client, proc.pid
    finally:
        stop_process(proc)


def ask(url: str, n: int, k: int, work: Path, figures: dict | None = None) -> list[str]:
    """Start `fitboard web` on url and time every question k times; the summary lines (figures, when given, gets
    {label: (p50, p95)})."""
    lines, p50s = [], {}
    figures = {} if figures is None else figures
    with web(url, work) as (client, pid):
        for label, path, params, kind in questions(client, n):
            try:
                ms, cpu = timed(client, path, params, k, pid)
            except RuntimeError as exc:  # one broken question must not lose every other figure
                lines.append(f"  {label:<34} FAILED: {exc}"[:200])
                continue
            p50, p95 = percentile(ms, 50), percentile(ms, 95)
            p50s[label], figures[label] = p50, (p50, p95)
            lo, hi = TARGETS[kind]
            ok = (lo is None or p50 <= lo) and (hi is None or p95 <= hi)
            mark = "" if lo is None else (" ok" if ok else " MISSED")
            lines.append(f"  {label:<34} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   server CPU {cpu:6.1f} ms{mark}")
    for first, deep in DEEP:
        if first in p50s and deep in p50s:
            ratio = p50s[deep] / p50s[first]
            lines.append(f"  cursor walk 40 pages deep: {deep} p50 {p50s[deep]:.1f} ms vs {first} "
                         f"{p50s[first]:.1f} ms: x{ratio:.2f}{' ok' if ratio <= 1.5 else ' MISSED'}")
    ms, cpu = epoch_write_ms(url, 200)
    mark = " ok" if percentile(ms, 50) <= 1 else " MISSED"
    lines.append(f"  {'epoch write (store, in-process)':<34} p50 {percentile(ms, 50):7.2f} ms   "
                 f"p95 {percentile(ms, 95):7.2f} ms   CPU {cpu:6.2f} ms{mark}")
    lines.append(f"  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end; targets judge "
                 f"the wall p50/p95)")
    return lines


def beside_mlflow(ours: dict, n: int, k: int, mlflow: str | None) -> list[str]:
    """The same n runs in MLflow (bench/scale_mlflow.py), each question MLflow can answer beside fitboard's figure."""
    from scale_mlflow import measure

    theirs, filled = measure(n, k, mlflow)
    lines = [f"\nMLflow on the same {n:,} runs (its store filled in {filled:.0f} s), {k} requests each over HTTP:",
             f"  {'question':<34} {'fitboard p50 / p95':>20} {'MLflow p50 / p95':>20}  MLflow / fitboard (p50)"]
    for label, (p50, p95) in theirs.items():
        mine = ours.get(label)
        lines.append(f"  {label:<34} {f'{mine[0]:.1f} / {mine[1]:.1f} ms' if mine else '-':>20} "
                     f"{f'{p50:.1f} / {p95:.1f} ms':>20}  {f'x{p50 / mine[0]:.1f}' if mine else ''}")
    return lines


def size_of(url: str) -> int:
    """How many runs a filled database holds (the fill's ids are 1..N)."""
    import sqlalchemy as sa

    engine = make_engine(url)
    with engine.connect() as conn:
        n = conn.execute(sa.text("SELECT max(id) FROM run")).scalar_one()
    engine.dispose()
    return n


def pair(small: str, big: str, k: int, work: Path) -> list[str]:
    """Every question asked of two filled databases side by side (one request to each in turn, so both see the same
    load), with each p50's ratio big / small: within 2x is the target (list questions and the pages)."""
    sizes = (size_of(small), size_of(big))
    lines = [f"  {'question (' + format(sizes[0], ',') + ' / ' + format(sizes[1], ',') + ' runs)':<34} wall p50 ms"
             f"        ratio         wall p95 ms       server CPU per request, ratio"]
    with web(small, work, "-small") as (a, pid_a), web(big, work, "-big") as (b, pid_b):
        p50s: dict[str, tuple[float, float]] = {}
        for qa, qb in zip(questions(a, sizes[0]), questions(b, sizes[1])):
            ms: tuple[list, list] = ([], [])
            items: list[int | None] = [None, None]
            try:
                for i in range(k + 1):
                    if i == 1:
                        cpu0 = [sum(cpu_times(pid)) for pid in (pid_a, pid_b)]
                    for j, (client, q) in enumerate(((a, qa), (b, qb))):
                        t = time.perf_counter()
                        r = client.get(q[1], params=q[2])
                        if r.status_code != 200:
                            raise RuntimeError(f"{q[1]} {q[2]}: {r.status_code} {r.text[:200]}")
                        if i:  # the first of each is a warm-up
                            ms[j].append((time.perf_counter() - t) * 1000)
                        elif r.headers.get("content-type", "").startswith("application/json"):
                            items[j] = len(r.json().get("items", [])) if isinstance(r.json(), dict) else None
            except RuntimeError as exc:
                lines.append(f"  {qb[0]:<34} FAILED: {exc}"[:200])
                continue
            cpu = [(sum(cpu_times(pid)) - c0) * 1000 / k for pid, c0 in zip((pid_a, pid_b), cpu0)]
            (p50a, p50b), (p95a, p95b) = [[percentile(m, q) for m in ms] for q in (50, 95)]
            p50s[qb[0]] = (p50a, p50b)
            mark = "" if qb[3] == "other" else (" ok" if p50b <= 2 * p50a else " MISSED")
            if items[0] is not None and items[0] < (items[1] or 0):  # past the small list's end: another question
                mark = f" n/a: {items[0]} / {items[1]} runs listed"
            lines.append(f"  {qb[0]:<34} {p50a:6.1f} / {p50b:6.1f} ms  x{p50b / p50a:4.2f}{mark:<7} p95 {p95a:6.1f} / "
                         f"{p95b:6.1f}   server CPU {cpu[0]:5.1f} / {cpu[1]:5.1f} ms  "
                         f"x{cpu[1] / max(cpu[0], 0.1):4.2f}")
    for first, deep in DEEP:
        if first in p50s and deep in p50s:
            for size, f_ms, d_ms in list(zip(sizes, p50s[first], p50s[deep]))[1:]:  # the small one has few pages
                lines.append(f"  {size:>9,} runs: cursor walk 40 pages deep ({deep}) {d_ms:.1f} ms vs first page "
                             f"{f_ms:.1f} ms: x{d_ms / f_ms:.2f}{' ok' if d_ms <= 1.5 * f_ms else ' MISSED'}")
    lines.append(f"  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end)")
    return lines


def drop_postgres(url: str) -> None:
    """Drop the bench's PostgreSQL database."""
    import psycopg2

    conn = psycopg2.connect(PG_ADMIN)
    conn.autocommit = True
    # FORCE: this process's Optuna storage (the search's study) still holds connections
    conn.cursor().execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")
    conn.close()


def main() -> int:
    """Fill, migrate, ask, print."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--requests", type=int, default=30, help="timed requests per question (after one warm-up)")
    ap.add_argument("--fill-only", metavar="DATABASE_URL", help="fill this (empty) database and exit")
    ap.add_argument("--base", action="store_true", help="with --fill-only: stop at revision 0008 (a copy of it is "
                                                        "then given to --migrate)")
    ap.add_argument("--migrate", metavar="DATABASE_URL", help="a database filled at 0008 (--fill-only --base, "
                                                              "copied): migrate it to the head, timed, then ask")
    ap.add_argument("--use", metavar="DATABASE_URL", help="ask an already filled database (no fill)")
    ap.add_argument("--pair", nargs=2, metavar=("SMALL_URL", "BIG_URL"),
                    help="ask two filled databases side by side and print each question's ratio (big / small)")
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    ap.add_argument("--peer", choices=("mlflow",), help="then the same runs in MLflow, side by side "
                                                        "(bench/scale_mlflow.py; the peer extra in a venv of its own)")
    ap.add_argument("--only", default="", metavar="REGEX", help="ask only the questions whose label matches")
    ap.add_argument("--mlflow", help="with --peer mlflow: its mlflow command (default .peer/bin/mlflow, then PATH)")
    args = ap.parse_args()
    global ONLY
    ONLY = args.only
    work = Path(tempfile.mkdtemp(prefix="fb-scale-"))
    if args.fill_only:
        filled, migrated = fill(args.fill_only, args.runs, migrate=not args.base)
        print(f"filled {args.runs} runs in {filled:.0f} s" + (f"; migrated to the head in {migrated:.1f} s"
                                                              if migrated is not None else " at revision 0008"))
        return 0
    if args.pair:
        print("\n".join(pair(*args.pair, args.requests, work)), flush=True)
        return 0
    url = args.use or args.migrate or new_database(args.db, args.runs, work)
    print(f"database: {url.split('@')[-1]}", flush=True)
    try:
        if args.migrate:
            migrated = migrate_filled(url, args.runs)
            print(f"migration 0008 -> head of {args.runs:,} runs in {migrated:.1f} s"
                  f"{' ok' if migrated < 120 else ' MISSED'}", flush=True)
        elif not args.use:
            filled, migrated = fill(url, args.runs)
            print(f"filled {args.runs:,} runs ({args.runs * EPOCHS:,} epoch rows) in {filled:.0f} s; migration "
                  f"0008 -> head in {migrated:.1f} s{' ok' if migrated < 120 else ' MISSED'}", flush=True)
        ours: dict = {}
        lines = ask(url, args.runs, args.requests, work, ours)
        db = "postgres" if url.startswith("postgresql") else "sqlite"
        print(f"\n{args.runs:,} runs on {db}, {args.requests} requests each through `fitboard web` over HTTP:")
        print("\n".join(lines), flush=True)
        if args.peer:
            print("\n".join(beside_mlflow(ours, args.runs, args.requests, args.mlflow)), flush=True)
    finally:
        if not args.keep and not args.use and not args.migrate:
            drop_postgres(url) if url.startswith("postgresql") else Path(url.split("///", 1)[1]).unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
