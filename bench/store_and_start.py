"""Store write cost under a polling reader, and warm-worker versus cold-process time to the first optimizer step.

Prints figures; it is a benchmark, not a test.

1. Write cost: p50/p99 milliseconds of one epoch row (record_epoch) and one progress update (record_progress),
   each in its own short transaction, while a separate reader process polls the way the web UI does
   (list_runs, get_run, list_epochs). SQLite always; PostgreSQL too with --postgres (a scratch database,
   dropped afterwards). Target: p99 <= 5 ms.
2. Start latency: enqueue -> first optimizer step on an already running worker (warm) versus spawning
   `python -m fitboard.worker.cli train RECIPE --json` (cold), alternating, each --reps times; the recipe is
   recipes/demo.yaml cut to 1 stage of 1 epoch. Target: warm at least 3x quicker.

Usage:
    python bench/store_and_start.py [--writes 500] [--reps 3] [--reader-hz 20] [--postgres [--postgres-url URL]]
                                    [--skip-writes] [--skip-start]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_common import epoch_row, print_summary, run_state, wait_worker_ready  # noqa: E402  (bench/ is on sys.path when run as a script)
from sqlalchemy import make_url  # noqa: E402

from fitboard.app.core.status import FINISHED  # noqa: E402
from fitboard.app.store.db import make_engine, session_scope, upgrade  # noqa: E402
from fitboard.app.store.runs import (  # noqa: E402
    claim_run,
    create_run,
    get_run,
    list_epochs,
    list_runs,
    record_epoch,
    record_progress,
)

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
WRITE_TARGET_MS = 5.0
START_TARGET_RATIO = 3.0
POLL_S = 0.02  # how often the warm case looks for the first progress entry
OTHER_RUNS = 60  # filler runs, so the reader's list_runs returns a full page of 50
WARMUP_WRITES = 10  # unmeasured writes first: connection setup and statement caches are not the steady state


# ---------------------------------------------------------------------------------------------------------------
# Part 1: write cost under a polling reader
# ---------------------------------------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def seed_runs(engine, spec: dict) -> int:
    """Create filler runs and one claimed (running) run to write to; returns the bench run's id."""
    with session_scope(engine) as session:
        for i in range(OTHER_RUNS):
            create_run(session, spec, name=f"filler-{i}", dataset="digits")
        run = create_run(session, spec, name="bench-writes", dataset="digits")
    with session_scope(engine) as session:
        claim_run(session, run.id, "bench")
    return run.id


def reader_loop(url: str, run_id: int, hz: float, ready, stop, polls) -> None:
    """A web-like poller in its own process: list_runs(limit=50), get_run, list_epochs, at hz (0 = flat out)."""
    engine = make_engine(url)
    period = 1.0 / hz if hz > 0 else 0.0
    ready.set()
    next_at = time.perf_counter()
    while not stop.is_set():
        with session_scope(engine) as session:
            list_runs(session, limit=50)
            get_run(session, run_id)
            list_epochs(session, run_id)
        polls.value += 1
        next_at += period
        pause = next_at - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        else:
            next_at = time.perf_counter()  # fell behind: do not burst to catch up
    engine.dispose()


def progress_doc(i: int, total: int) -> dict:
    """A progress document shaped like DatabaseReporter's state."""
    return {"stages": [{"stage": 0, "epochs": total, "size": 24, "presize": 32, "bs": 64, "frozen": False,
                        "lr": 1e-3}], "notes": [],
            "batch": {"stage": 0, "epoch": i, "batch": 10, "total": 23, "elapsed": 2.0, "eta": 2.6,
                      "smooth_loss": 0.5}}


def timed_ms(engine, write, *args) -> float:
    """Milliseconds of one write in its own transaction (session open to commit)."""
    t0 = time.perf_counter()
    with session_scope(engine) as session:
        write(session, *args)
    return (time.perf_counter() - t0) * 1000


def measure_writes(url: str, spec: dict, n: int, reader_hz: float) -> dict:
    """Write n epoch rows and n progress updates, alternating, while a reader process polls; returns timings."""
    engine = make_engine(url)
    run_id = seed_runs(engine, spec)
    ctx = mp.get_context("spawn")  # a clean process: no engine or connection inherited from this one
    ready, stop, polls = ctx.Event(), ctx.Event(), ctx.Value("i", 0)
    reader = ctx.Process(target=reader_loop, args=(url, run_id, reader_hz, ready, stop, polls), daemon=True)
    reader.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("the reader process did not start")
        time.sleep(0.3)  # let it get into its loop
        for i in range(WARMUP_WRITES):
            timed_ms(engine, record_epoch, run_id, epoch_row(i, stage=1))
            timed_ms(engine, record_progress, run_id, progress_doc(i, n))
        polls_before, t0 = polls.value, time.perf_counter()
        epoch_ms, progress_ms = [], []
        for i in range(n):
            epoch_ms.append(timed_ms(engine, record_epoch, run_id, epoch_row(i)))
            progress_ms.append(timed_ms(engine, record_progress, run_id, progress_doc(i, n)))
        seconds, reader_polls = time.perf_counter() - t0, polls.value - polls_before
    finally:
        stop.set()
        reader.join(10)
        if reader.is_alive():
            reader.kill()
        engine.dispose()
    return {"epoch": epoch_ms, "progress": progress_ms, "seconds": seconds, "polls": reader_polls}


def create_pg_database(admin_url: str) -> tuple[str, str]:
    """Create a scratch database next to admin_url; returns (its name, its URL)."""
    name = f"fitboard_bench_{uuid.uuid4().hex[:12]}"
    pg_admin_sql(admin_url, f'CREATE DATABASE "{name}"')
    url = make_url(admin_url).set(database=name)
    if url.drivername == "postgresql":  # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; we ship psycopg2
        url = url.set(drivername="postgresql+psycopg2")
    return name, url.render_as_string(hide_password=False)


def pg_admin_sql(admin_url: str, sql: str) -> None:
    """Run one statement in autocommit on the admin database (CREATE/DROP DATABASE need it)."""
    import psycopg2

    u = make_url(admin_url)
    conn = psycopg2.connect(host=u.host, port=u.port or 5432, user=u.username, password=u.password,
                            dbname=u.database, connect_timeout=3)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def write_summary(backend: str, r: dict) -> list[str]:
    """Lines reporting one backend's write timings against the target."""
    lines = []
    for kind, label in (("epoch", "epoch row write"), ("progress", "progress update")):
        ms = r[kind]
        p99 = percentile(ms, 99)
        verdict = "PASS" if p99 <= WRITE_TARGET_MS else "FAIL"
        lines.append(f"[{backend}] {label}: p50 {percentile(ms, 50):.2f} ms, p99 {p99:.2f} ms, max {max(ms):.2f} ms "
                     f"(n={len(ms)}; target p99 <= {WRITE_TARGET_MS:g} ms: {verdict})")
    lines.append(f"[{backend}] concurrent reader: {r['polls']} polls in {r['seconds']:.1f} s "
                 f"({r['polls'] / r['seconds']:.1f} polls/s)")
    return lines


def bench_writes(args, spec: dict, work: Path) -> list[str]:
    """Part 1 on SQLite (and Postgres when asked); returns summary lines."""
    lines = []
    url = f"sqlite:///{work / 'writes.db'}"
    upgrade(url)
    print(f"writes: SQLite {url}, {args.writes} epoch rows + {args.writes} progress updates, "
          f"reader at {args.reader_hz or 'max'} polls/s", flush=True)
    lines += write_summary("sqlite", measure_writes(url, spec, args.writes, args.reader_hz))
    if args.postgres:
        name, pg_url = create_pg_database(args.postgres_url)
        print(f"writes: PostgreSQL scratch database {name}", flush=True)
        try:
            upgrade(pg_url)
            lines += write_summary("postgres", measure_writes(pg_url, spec, args.writes, args.reader_hz))
        finally:
            pg_admin_sql(args.postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return lines


# ---------------------------------------------------------------------------------------------------------------
# Part 2: warm worker versus cold process, to the first optimizer step
# ---------------------------------------------------------------------------------------------------------------

def short_recipe() -> dict:
    """recipes/demo.yaml with only its first stage, cut to 1 epoch."""
    from fitboard.app.core.recipes import read_recipe_file

    recipe = read_recipe_file(ROOT / "recipes" / "demo.yaml")
    recipe["stages"] = [{**recipe["stages"][0], "epochs": 1}]
    return recipe


def fitboard_env(home: Path, db_url: str, data_root: Path) -> dict:
    """The environment for worker and CLI processes: temp home, database and data root; embedded broker."""
    env = {**os.environ, "FITBOARD_HOME": str(home), "FITBOARD_DATABASE_URL": db_url,
           "FITBOARD_DATA_ROOT": str(data_root), "PYTHONUNBUFFERED": "1"}
    env.pop("FITBOARD_BROKER_URL", None)
    return env


def start_worker(env: dict, queue: str, log_path: Path) -> subprocess.Popen:
    """Start `python -m fitboard.worker.cli worker --queue QUEUE`, logging to log_path."""
    log = open(log_path, "w")
    return subprocess.Popen([sys.executable, "-m", "fitboard.worker.cli", "worker", "--queue", queue], cwd=ROOT,
                             env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def warm_once(engine, celery, settings, recipe: dict, queue: str, timeout: float = 180) -> tuple[float, float]:
    """Seconds from just before submit until the worker claims the run, and until its progress holds a "batch"."""
    from fitboard.app.services import runs
    from fitboard.app.services.queue import Publisher
    from fitboard.app.store.runs import request_cancel

    t0 = time.perf_counter()
    with session_scope(engine) as session:
        run = runs.submit(session, Publisher(celery, queue=queue), recipe, settings.data_root)
    claimed = None
    while True:
        status, progress, error = run_state(engine, run.id)
        if claimed is None and status != "queued":
            claimed = time.perf_counter() - t0  # the broker delivered and the task claimed the row
        if progress and "batch" in progress:
            elapsed = time.perf_counter() - t0
            break
        if status in FINISHED:
            raise RuntimeError(f"warm run {run.id} ended {status} before its first step: {error}")
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"warm run {run.id} took no step in {timeout:.0f} s (status {status})")
        time.sleep(POLL_S)
    with session_scope(engine) as session:
        request_cancel(session, run.id)  # cooperative: the callback stops the fit at its next check
    wait_finished(engine, run.id)
    return elapsed, claimed if claimed is not None else elapsed


def wait_finished(engine, run_id: int, timeout: float = 180) -> str:
    """Wait until the run has ended, so the worker is idle again; returns its status."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        status, _, _ = run_state(engine, run_id)
        if status in FINISHED:
            return status
        time.sleep(0.1)
    raise RuntimeError(f"run {run_id} did not end within {timeout:.0f} s")


def cold_once(env: dict, recipe_path: Path, data_root: Path, out: Path, log_path: Path, timeout: float = 180) -> float:
    """Seconds from spawning `fitboard.worker.cli train --json` until its first "progress" line; then kill it."""
    cmd = [sys.executable, "-m", "fitboard.worker.cli", "train", str(recipe_path), "--json", "--data-root",
           str(data_root),
           "--out", str(out)]
    with open(log_path, "w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            for line in proc.stdout:
                if time.perf_counter() - t0 > timeout:
                    raise RuntimeError(f"cold run took no step in {timeout:.0f} s")
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if event.get("event") == "progress":
                    return time.perf_counter() - t0
                if event.get("event") == "error":
                    raise RuntimeError(f"cold run failed: {event.get('message')}")
            raise RuntimeError(f"cold run exited ({proc.wait()}) without a progress event:\n"
                               f"{log_path.read_text()[-3000:]}")
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()


def stop_process(proc: subprocess.Popen) -> None:
    """Stop a process this script started: SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def bench_start(args, work: Path) -> list[str]:
    """Part 2: warm and cold alternately, args.reps times each; returns summary lines."""
    from fitboard.app.core.demo_data import write_digits
    from fitboard.app.core.settings import Settings
    from fitboard.app.services.queue import make_celery

    home, data_root = work / "home", work / "datasets"
    home.mkdir()
    write_digits(data_root / "digits")
    db_url = f"sqlite:///{home / 'fitboard.db'}"
    upgrade(db_url)
    engine = make_engine(db_url)
    recipe = short_recipe()
    recipe_path = work / "bench-recipe.json"
    recipe_path.write_text(json.dumps(recipe))
    env = fitboard_env(home, db_url, data_root)
    settings = Settings(home=home, database_url=db_url, data_root=data_root, broker_url=None)
    celery = make_celery(settings)
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    worker_log = home / "worker.log"
    print(f"start: launching a warm worker on queue {queue} (log {worker_log})", flush=True)
    worker = start_worker(env, queue, worker_log)
    warm, cold = [], []
    try:
        ready_s = wait_worker_ready(engine, worker, worker_log)
        print(f"start: worker ready after {ready_s:.1f} s", flush=True)
        for rep in range(1, args.reps + 1):
            step_s, claim_s = warm_once(engine, celery, settings, {**recipe, "name": f"bench-warm-{rep}"}, queue)
            warm.append(step_s)
            print(f"  rep {rep}: warm {step_s:.2f} s (claimed after {claim_s:.2f} s)", flush=True)
            cold.append(cold_once(env, recipe_path, data_root, work / f"cold-{rep}", home / f"cold-{rep}.log"))
            print(f"  rep {rep}: cold {cold[-1]:.2f} s", flush=True)
    finally:
        stop_process(worker)
        engine.dispose()
    w, c = statistics.median(warm), statistics.median(cold)
    ratio = c / w
    verdict = "PASS" if ratio >= START_TARGET_RATIO else "FAIL"
    return [f"warm worker, enqueue -> first optimizer step: median {w:.2f} s "
            f"(runs: {', '.join(f'{x:.2f}' for x in warm)})",
            f"cold process, spawn -> first optimizer step: median {c:.2f} s "
            f"(runs: {', '.join(f'{x:.2f}' for x in cold)})",
            f"cold / warm: {ratio:.1f}x (target >= {START_TARGET_RATIO:g}x: {verdict})"]


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--writes", type=int, default=500, help="epoch rows and progress updates to time (each)")
    p.add_argument("--reader-hz", type=float, default=20.0, help="reader polls per second; 0 = as fast as it can")
    p.add_argument("--reps", type=int, default=3, help="warm and cold starts to time (each)")
    p.add_argument("--postgres", action="store_true", help="also time writes on PostgreSQL")
    p.add_argument("--postgres-url", default=POSTGRES_URL, help="admin database to create the scratch one from")
    p.add_argument("--skip-writes", action="store_true", help="skip part 1")
    p.add_argument("--skip-start", action="store_true", help="skip part 2")
    return p.parse_args(argv)


def main(argv=None) -> int:
    """Run both parts and print the summary."""
    args = parse_args(argv)
    t0 = time.perf_counter()
    summary = []
    with tempfile.TemporaryDirectory(prefix="fitboard-bench-") as tmp:
        work = Path(tmp)
        if not args.skip_writes:
            summary += bench_writes(args, short_recipe(), work)
        if not args.skip_start:
            summary += bench_start(args, work)
    return print_summary(summary, t0)


if __name__ == "__main__":
    sys.exit(main())
