"""Load benchmark: Locust, headless, against a real `fitboard web` process and a real worker, on SQLite and on
PostgreSQL, at 50, 200 and 500 simulated users (bench/load_users.py says what each user does), with the live latency
of epoch rows on an open event stream measured during each load.

Per database and level it prints (and with --markdown writes as a table): requests/s, p50/p95/p99 latency, errors by
status (503s with whether they carried Retry-After; anything else counts as an error), the time of a single GET of the
runs list right after the load, and the commit-to-client latency (p50/p95) of epoch rows that a writer commits, as a
worker does, every 200 ms while the load runs (and once without load). Targets: no 5xx other than 503 at any level,
p99 < 1 s at 200 users, live latency p95 < 50 ms. A benchmark, not a test: it prints figures.

Usage:
    python bench/load.py [--db sqlite,postgres] [--users 50,200,500] [--seconds 30] [--runs 300] [--markdown FILE]
The PostgreSQL run creates (and drops) a database named FITBOARD_BENCH_DB_PREFIX + a random suffix through
FITBOARD_TEST_POSTGRES_URL, with its broker on FITBOARD_BENCH_REDIS (a Redis database of its own).
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import insert, select  # noqa: E402

from fitboard.app.core.demo_data import write_digits  # noqa: E402
from fitboard.app.core.events import EpochEvent  # noqa: E402
from fitboard.app.services.datasets import ensure_demo_dataset  # noqa: E402
from fitboard.app.store.db import make_engine, session_scope, upgrade  # noqa: E402
from fitboard.app.store.models import EpochRow, Run, Worker, utcnow  # noqa: E402
from fitboard.app.store.runs import claim_run, create_run, record_epoch  # noqa: E402

PG_ADMIN = os.environ.get("FITBOARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("FITBOARD_BENCH_REDIS", "redis://127.0.0.1:6379/9")
DB_PREFIX = os.environ.get("FITBOARD_BENCH_DB_PREFIX", "fitboard_bench_")  # the PostgreSQL database's name prefix
LOCUSTFILE = ROOT / "bench" / "load_users.py"
RECIPE = {"name": "seeded", "dataset": "digits", "arch": "squeezenet1_1", "pretrained": False, "normalize": "dataset",
          "seed": 1, "stages": [{"epochs": 10, "size": 32, "presize": 40, "bs": 32, "lr": 3e-3}]}
WRITE_EVERY = 0.2  # seconds between the latency writer's epoch rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


# ---- the database -------------------------------------------------------------------------------------------------

def pg_database() -> tuple[str, callable]:
    """A new PostgreSQL database; its URL and a function that drops it."""
    import psycopg2

    name = f"{DB_PREFIX}{uuid.uuid4().hex[:10]}"

    def admin(sql: str) -> None:
        conn = psycopg2.connect(PG_ADMIN.replace("postgresql+psycopg2://", "postgresql://"))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
        conn.close()

    admin(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0]
    return f"{base}/{name}", lambda: admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(url: str, data_root: Path, runs: int) -> None:
    """The live run (id 1, running), then `runs` succeeded runs with 10 epoch rows each, and the digits dataset."""
    upgrade(url)
    engine = make_engine(url)
    with session_scope(engine) as s:
        ensure_demo_dataset(s, data_root)
        live = create_run(s, {**RECIPE, "name": "live"}).id
        claim_run(s, live, "bench-writer")
    now, rows, epochs = utcnow(), [], []
    for i in range(runs):
        acc = 0.5 + (i % 400) / 1000
        rows.append({"name": f"seeded-{i}", "dataset": "digits", "spec": {**RECIPE, "name": f"seeded-{i}"},
                     "status": "succeeded", "techniques": ["normalize:dataset", "presizing"], "cancel_requested": False,
                     "attempt": 1, "queue": "fitboard", "republish_count": 0, "notes": "", "tags": "",
                     "archived": False,
                     "created_at": now - timedelta(minutes=runs - i), "started_at": now - timedelta(minutes=runs - i),
                     "finished_at": now - timedelta(minutes=runs - i - 1), "best_accuracy": acc,
                     "result": {"metrics": {"valid_loss": 0.5, "accuracy": acc, "error_rate": 1 - acc}}})
    with engine.begin() as conn:
        conn.execute(insert(Run.__table__), rows)
    for run_id in range(live + 1, live + 1 + runs):
        for e in range(10):
            epochs.append({"run_id": run_id, "stage": 0, "epoch": e, "train_loss": 1.0 / (e + 1),
                           "valid_loss": 1.1 / (e + 1), "seconds": 2.0, "created_at": now,
                           "metrics": {"accuracy": 0.5 + e / 40, "error_rate": 0.5 - e / 40}})
    with engine.begin() as conn:
        conn.execute(insert(EpochRow.__table__), epochs)
    engine.dispose()


# ---- the processes ------------------------------------------------------------------------------------------------

class Stack:
    """`fitboard web` and `fitboard worker` on one database, each logging to a file under home."""

    def __init__(self, home: Path, url: str, broker: str | None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "FITBOARD_HOME": str(home), "FITBOARD_DATA_ROOT": str(home / "datasets"),
                    "FITBOARD_DATABASE_URL": url, "OMP_NUM_THREADS": "1"}
        self.env.pop("FITBOARD_API_TOKEN", None)
        if broker:
            self.env["FITBOARD_BROKER_URL"] = broker
        else:
            self.env.pop("FITBOARD_BROKER_URL", None)
        self.procs = []
        for name, args in (("web", ["web", "--port", str(self.port)]), ("worker", ["worker"])):
            log = open(home / f"{name}.log", "w")
            self.procs.append(subprocess.Popen([sys.executable, "-m", "fitboard.worker.cli", *args], env=self.env,
                                                stdout=log,
                                               stderr=subprocess.STDOUT, cwd=ROOT))
        self.home = home

    def wait_ready(self, engine, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        web_up = worker_up = False
        while time.monotonic() < deadline and not (web_up and worker_up):
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"a process exited: see {self.home}/*.log")
            try:
                web_up = web_up or httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                pass
            with session_scope(engine) as s:
                worker_up = s.exec(select(Worker.name)).first() is not None
            time.sleep(0.3)
        if not (web_up and worker_up):
            raise RuntimeError(f"not ready in {timeout:.0f} s (web {web_up}, worker {worker_up})")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


# ---- live latency: a writer commits epoch rows, a reader holds the run's event stream -----------------------------

class LiveProbe:
    """Epoch rows of run 1 committed every WRITE_EVERY s; their arrival on an event stream; latency per row."""

    def __init__(self, engine, base: str):
        self.engine, self.base = engine, base
        self.committed: dict[int, float] = {}  # row ordinal -> perf_counter right after the commit
        self.arrived: dict[int, float] = {}
        self.next_epoch = 0
        self.stop = threading.Event()

    def window(self, seconds: float) -> list[float]:
        """Write rows for `seconds` while reading the stream; the latencies (ms) of the rows written."""
        first = self.next_epoch + 1
        self.stop.clear()
        reader = threading.Thread(target=self._read, daemon=True)
        reader.start()
        time.sleep(1.0)  # connected, stored rows sent
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            with session_scope(self.engine) as s:
                record_epoch(s, 1, EpochEvent(stage=0, epoch=self.next_epoch, train_loss=1.0, valid_loss=1.0,
                                              metrics={"accuracy": 0.5}, seconds=0.2))
            self.next_epoch += 1
            self.committed[self.next_epoch] = time.perf_counter()
            time.sleep(WRITE_EVERY)
        time.sleep(2.0)  # the last rows arrive
        self.stop.set()
        reader.join(timeout=10)
        return [(self.arrived[i] - self.committed[i]) * 1000 for i in range(first, self.next_epoch + 1)
                if i in self.arrived]

    def _read(self) -> None:
        while not self.stop.is_set():
            last = max(self.arrived, default=0)
            try:
                with httpx.stream("GET", f"{self.base}/api/v1/runs/1/events", timeout=httpx.Timeout(10, read=5),
                                  headers={"Last-Event-ID": str(last)}) as r:
                    if r.status_code != 200:
                        time.sleep(0.2)
                        continue
                    ident = None
                    for line in r.iter_lines():
                        if line.startswith("id: "):
                            ident = int(line[4:])
                        elif line.startswith("event: epoch") and ident is None:
                            pass
                        elif line == "" and ident is not None:
                            self.arrived.setdefault(ident, time.perf_counter())
                            ident = None
                        if self.stop.is_set():
                            return
            except httpx.HTTPError:
                time.sleep(0.2)


# ---- one Locust level ---------------------------------------------------------------------------------------------

def locust_level(stack: Stack, users: int, seconds: int, runs: int, work: Path) -> dict:
    """Run Locust headless for `seconds` at `users`; the aggregate figures and errors by status."""
    prefix = work / f"locust-{users}"
    env = {**os.environ, "FITBOARD_BENCH_RUNS": str(runs), "FITBOARD_BENCH_LIVE_RUN": "1"}
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(users),
           "-r", str(max(10, users // 5)), "-t", f"{seconds}s", "--host", stack.url, "--csv", str(prefix),
           "--only-summary", "--stop-timeout", "5", "--loglevel", "WARNING"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 120)
    stats = {}
    with open(f"{prefix}_stats.csv") as fh:
        for row in csv.DictReader(fh):
            if row["Name"] == "Aggregated":
                stats = row
    errors: dict[str, int] = {}
    with open(f"{prefix}_failures.csv") as fh:
        for row in csv.DictReader(fh):
            err = row["Error"]
            key = err.split("'")[1] if err.startswith("CatchResponseError") and "'" in err else err[:80]
            errors[key] = errors.get(key, 0) + int(row["Occurrences"])
    if not stats:
        raise RuntimeError(f"locust gave no figures:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return {"users": users, "requests": int(stats["Request Count"]), "rps": float(stats["Requests/s"]),
            "p50": float(stats["50%"]), "p95": float(stats["95%"]), "p99": float(stats["99%"]), "errors": errors}


def single_get(base: str) -> float:
    """Milliseconds of one GET of the runs list (after a load: does it answer at once?)."""
    t0 = time.perf_counter()
    r = httpx.get(f"{base}/api/v1/runs?limit=50", timeout=60)
    ms = (time.perf_counter() - t0) * 1000
    return ms if r.status_code == 200 else float("nan")


def bench_db(db: str, args, work: Path) -> list[dict]:
    """Every level on one database; rows for the table."""
    home = work / db
    (home / "datasets").mkdir(parents=True)
    write_digits(home / "datasets" / "digits", limit=120)
    drop = None
    if db == "postgres":
        url, drop = pg_database()
        broker = REDIS
    else:
        url, broker = f"sqlite:///{home / 'fitboard.db'}", None
    out = []
    try:
        seed(url, home / "datasets", args.runs)
        engine = make_engine(url)
        stack = Stack(home, url, broker)
        try:
            stack.wait_ready(engine)
            probe = LiveProbe(engine, stack.url)
            idle = probe.window(5)
            print(f"[{db}] live latency without load: p50 {pct(idle, 50):.1f} ms, p95 {pct(idle, 95):.1f} ms "
                  f"({len(idle)} rows)", flush=True)
            out.append({"db": db, "users": 0, "live": idle})
            for users in args.users:
                # The stream is open before the load starts (a dashboard tab left open), rows are written while the
                # users run: the latency of an open stream under load, not whether a new one gets in.
                live: list = []
                prober = threading.Thread(target=lambda out=live: out.extend(probe.window(args.seconds - 4)))
                prober.start()
                time.sleep(1.5)
                result = locust_level(stack, users, args.seconds, args.runs, home)
                prober.join()
                result.update(db=db, live=live, after_ms=single_get(stack.url))
                out.append(result)
                print(f"[{db}] {users} users: {result['rps']:.0f} req/s, p50 {result['p50']:.0f} ms, p95 "
                      f"{result['p95']:.0f} ms, p99 {result['p99']:.0f} ms, errors {result['errors'] or 'none'}, "
                      f"single GET after {result['after_ms']:.0f} ms, live p50 {pct(live, 50):.1f} ms p95 "
                      f"{pct(live, 95):.1f} ms ({len(live)} rows)", flush=True)
        finally:
            stack.stop()
            engine.dispose()
    finally:
        if drop:
            drop()
    return out


def table(rows: list[dict], args, started: float) -> str:
    """The results as a markdown table with the command and the verdicts."""
    lines = ["| database | users | requests | req/s | p50 ms | p95 ms | p99 ms | errors by status | GET after, ms "
             "| live p50 ms | live p95 ms |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        live = r["live"]
        if r["users"] == 0:
            lines.append(f"| {r['db']} | 0 (no load) | | | | | | | | {pct(live, 50):.1f} | {pct(live, 95):.1f} |")
            continue
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(r["errors"].items())) or "none"
        lines.append(f"| {r['db']} | {r['users']} | {r['requests']} | {r['rps']:.0f} | {r['p50']:.0f} | "
                     f"{r['p95']:.0f} | {r['p99']:.0f} | {errors} | {r['after_ms']:.0f} | {pct(live, 50):.1f} | "
                     f"{pct(live, 95):.1f} |")
    verdicts = []
    for r in rows:
        if r["users"] == 0:
            continue
        bad = {k: v for k, v in r["errors"].items() if k.startswith("HTTP 5") and not k.startswith("HTTP 503")}
        # Locust reports a request that got no answer (refused, reset, timed out) as status 0
        other = {k: v for k, v in r["errors"].items() if not k.startswith("HTTP") or k == "HTTP 0"}
        verdicts.append(f"- {r['db']}, {r['users']} users: 5xx other than 503: {sum(bad.values())}; no answer "
                        f"(HTTP 0: reset, refused or timed out): {sum(other.values())}; 503 without Retry-After: "
                        f"{r['errors'].get('HTTP 503', 0)}"
                        + (f"; p99 {r['p99']:.0f} ms against the 1,000 ms target: "
                           f"{'met' if r['p99'] < 1000 and not bad else 'missed'}" if r["users"] == 200 else "")
                        + f"; live p95 {pct(r['live'], 95):.1f} ms against 50 ms: "
                          f"{'met' if pct(r['live'], 95) < 50 else 'missed'}")
    cmd = "python bench/load.py " + " ".join(sys.argv[1:])
    return "\n".join(["```", cmd, "```", f"({time.perf_counter() - started:.0f} s, {os.cpu_count()} CPU cores, "
                      f"load average before the run {args.load_before})", "", *lines, "", *verdicts, ""])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--users", default="50,200,500")
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    args.users = [int(u) for u in args.users.split(",")]
    args.load_before = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="fitboard-load-"))
    rows = []
    try:
        for db in args.db.split(","):
            rows += bench_db(db, args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = table(rows, args, started)
    print("\n=== summary ===\n" + text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
