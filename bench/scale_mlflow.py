"""MLflow beside fitboard on the same runs: fill an MLflow tracking store (SQLite) with the rows bench/scale.py
writes for fitboard, start `mlflow server` on it, and time the list questions MLflow can answer through its REST API
(POST /api/2.0/mlflow/runs/search), p50 and p95.

    python bench/scale_mlflow.py --runs 100000 [--requests 10] [--mlflow /path/to/venv/bin/mlflow]
    python bench/scale.py --runs 100000 --peer mlflow     # both, side by side

MLflow comes from the `peer` extra into a virtual environment of its own (it pins its own SQLAlchemy, Alembic and
FastAPI): `python -m venv .peer && .peer/bin/pip install -e '.[peer]'`; `--mlflow` (or FITBOARD_BENCH_MLFLOW) names
its `mlflow` command, by default `.peer/bin/mlflow`, then `mlflow` on PATH.

The same data as fitboard's: run i is `run-{i}` with the same status, dataset, accuracy, TTA accuracy, tag x (10%)
and 20 accuracy rows; every 10th run sits in a second experiment (fitboard's project `other`), sweep and search runs
carry `sweep` and `search` tags. Statuses map to MLflow's: succeeded FINISHED, failed FAILED, cancelled and pruned
KILLED, queued SCHEDULED, running RUNNING.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
from scale import CHUNK, EPOCHS, OTHER_SHARE, RUN_COLUMNS, fill_start, run_rows  # noqa: E402
from web import free_port, percentile  # noqa: E402

STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "cancelled": "KILLED", "pruned": "KILLED",
          "queued": "SCHEDULED", "running": "RUNNING"}
COL = {c: i for i, c in enumerate(RUN_COLUMNS)}
MAIN, OTHER = 1, 2  # experiment ids: fitboard's default project, and its project "other"


def mlflow_command(given: str | None) -> str:
    """The `mlflow` command: given, FITBOARD_BENCH_MLFLOW, .peer/bin/mlflow, or on PATH."""
    for candidate in (given, os.environ.get("FITBOARD_BENCH_MLFLOW"), str(ROOT / ".peer" / "bin" / "mlflow"),
                      shutil.which("mlflow")):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit("no mlflow: python -m venv .peer && .peer/bin/pip install -e '.[peer]' (or pass --mlflow)")


def _millis(text: str | None) -> int | None:
    if text is None:
        return None
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp() * 1000)


def _uuid(i: int) -> str:
    return uuid.UUID(int=i + 1).hex


def _rows(lo: int, hi: int, n: int, t0: datetime):
    """(runs, metrics, latest_metrics, params, tags) rows of fitboard runs lo..hi-1, MLflow's way."""
    runs, metrics, latest, params, tags = [], [], [], [], []
    for r in run_rows(lo, hi, n, t0):
        i = r[COL["id"]] - 1
        run_id, status = _uuid(i), r[COL["status"]]
        start, end = _millis(r[COL["created_at"]]), _millis(r[COL["finished_at"]])
        runs.append((run_id, r[COL["name"]], "LOCAL", "bench", "", "bench", STATUS[status], start, end, "",
                     "active", f"/tmp/mlflow-bench/{run_id}", OTHER if i % OTHER_SHARE == 7 else MAIN))
        acc, tta = r[COL["best_accuracy"]], r[COL["tta_accuracy"]]
        if acc is not None:  # its accuracy curve rises to the run's own, as fitboard's epoch rows do
            for k in range(EPOCHS):
                value = acc if k == EPOCHS - 1 else round(0.3 + 0.6 * k / EPOCHS, 4)
                metrics.append(("accuracy", value, start + 30_000 * k, run_id, k, False))
            latest.append(("accuracy", acc, start + 30_000 * (EPOCHS - 1), EPOCHS - 1, False, run_id))
        if tta is not None:
            metrics.append(("tta_accuracy", tta, end or start, run_id, 0, False))
            latest.append(("tta_accuracy", tta, end or start, 0, False, run_id))
        params.append(("dataset", r[COL["dataset"]], run_id))
        tags.append(("mlflow.runName", r[COL["name"]], run_id))
        if r[COL["tags"]]:
            tags.append(("x", "1", run_id))
        for key in ("sweep_id", "search_id"):
            if r[COL[key]] is not None:
                tags.append((key.split("_")[0], str(r[COL[key]]), run_id))
    return runs, metrics, latest, params, tags


def fill(path: Path, n: int, mlflow: str) -> float:
    """MLflow's schema (its own migrations, run by its store on first use), then n runs by bulk insert."""
    t = time.perf_counter()
    python = Path(mlflow).with_name("python")
    subprocess.run([str(python), "-c", "import sys; from mlflow.store.tracking.sqlalchemy_store import "
                    "SqlAlchemyStore as S; S(sys.argv[1], sys.argv[2])", f"sqlite:///{path}", str(path.parent / "a")],
                   check=True, capture_output=True)
    t0 = fill_start(n)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    now = int(time.time() * 1000)
    conn.executemany("INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, "
                     "creation_time, last_update_time) VALUES (?, ?, '/tmp/mlflow-bench', 'active', ?, ?)",
                     [(MAIN, "default", now, now), (OTHER, "other", now, now)])
    tables = (("runs", "run_uuid, name, source_type, source_name, entry_point_name, user_id, status, start_time, "
                       "end_time, source_version, lifecycle_stage, artifact_uri, experiment_id"),
              ("metrics", "key, value, timestamp, run_uuid, step, is_nan"),
              ("latest_metrics", "key, value, timestamp, step, is_nan, run_uuid"),
              ("params", "key, value, run_uuid"), ("tags", "key, value, run_uuid"))
    for lo in range(0, n, CHUNK):
        conn.execute("BEGIN")
        for (table, cols), rows in zip(tables, _rows(lo, min(n, lo + CHUNK), n, t0)):
            conn.executemany(f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * (cols.count(',') + 1))})", rows)
        conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()
    return time.perf_counter() - t


def questions(n: int) -> list[tuple[str, dict]]:
    """(label as bench/scale.py prints it, the runs/search body) of each question MLflow can answer."""
    both, main = [str(MAIN), str(OTHER)], [str(MAIN)]
    return [("newest 50", {"experiment_ids": both, "order_by": ["attributes.start_time DESC"]}),
            ("best 50 by accuracy", {"experiment_ids": both, "order_by": ["metrics.accuracy DESC"]}),
            ("best 50 by TTA accuracy", {"experiment_ids": both, "order_by": ["metrics.tta_accuracy DESC"]}),
            ("status=failed", {"experiment_ids": both, "filter": "attributes.status = 'FAILED'"}),
            ("project=other (a tenth of runs)", {"experiment_ids": [str(OTHER)]}),
            ("project=other by accuracy", {"experiment_ids": [str(OTHER)], "order_by": ["metrics.accuracy DESC"]}),
            ("status=running", {"experiment_ids": both, "filter": "attributes.status = 'RUNNING'"}),
            ("dataset=pets", {"experiment_ids": both, "filter": "params.dataset = 'pets'"}),
            ("tag=x", {"experiment_ids": both, "filter": "tags.x = '1'"}),
            ("tag=x by accuracy", {"experiment_ids": both, "filter": "tags.x = '1'",
                                   "order_by": ["metrics.accuracy DESC"]}),
            ("search=1 (its trials)", {"experiment_ids": main, "filter": "tags.search = '1'"}),
            ("sweep=1", {"experiment_ids": main, "filter": "tags.sweep = '1'"}),
            (f"name=run-{n // 3}", {"experiment_ids": both, "filter": f"attributes.run_name LIKE '%run-{n // 3}%'"}),
            ("name=un-1 (many match)", {"experiment_ids": both, "filter": "attributes.run_name LIKE '%un-1%'"})]


def _search(client: httpx.Client, body: dict) -> dict:
    r = client.post("/api/2.0/mlflow/runs/search", json={"max_results": 50, **body})
    if r.status_code != 200:
        raise RuntimeError(f"{body}: {r.status_code} {r.text[:300]}")
    return r.json()


def timed(client: httpx.Client, body: dict, k: int) -> list[float]:
    """k timings (ms) of one runs/search after a warm-up (which must find runs: the question has answers)."""
    out = []
    for i in range(k + 1):
        t = time.perf_counter()
        found = _search(client, body)
        if i:
            out.append((time.perf_counter() - t) * 1000)
        elif not found.get("runs"):
            raise RuntimeError(f"{body}: no runs found")
    return out


def measure(n: int, k: int, mlflow: str | None = None) -> tuple[dict[str, tuple[float, float]], float]:
    """({label: (p50, p95) ms} of every question, seconds the fill took) on a fresh store of n runs."""
    mlflow = mlflow_command(mlflow)
    work = Path(tempfile.mkdtemp(prefix="fb-mlflow-"))
    db = work / "mlflow.db"
    filled = fill(db, n, mlflow)
    port = free_port()
    log = (work / "server.log").open("wb")
    proc = subprocess.Popen([mlflow, "server", "--backend-store-uri", f"sqlite:///{db}", "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"], stdout=log, stderr=subprocess.STDOUT)
    out: dict[str, tuple[float, float]] = {}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=3600) as client:
            deadline = time.monotonic() + 180
            while True:
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"mlflow server did not start: {(work / 'server.log').read_text()[-2000:]}")
                time.sleep(0.5)
            for label, body in questions(n):
                ms = timed(client, body, k)
                out[label] = (percentile(ms, 50), percentile(ms, 95))
            token = None
            for _ in range(40):  # page 41: forty pages walked by page_token, then the 41st timed
                token = _search(client, {"experiment_ids": [str(MAIN), str(OTHER)],
                                         "order_by": ["attributes.start_time DESC"],
                                         **({"page_token": token} if token else {})})["next_page_token"]
            ms = timed(client, {"experiment_ids": [str(MAIN), str(OTHER)], "order_by": ["attributes.start_time DESC"],
                                "page_token": token}, k)
            out["page 41 by cursor"] = (percentile(ms, 50), percentile(ms, 95))
            first = _search(client, {"experiment_ids": [str(MAIN)], "filter": "attributes.status = 'FINISHED'",
                                     "max_results": 1})["runs"][0]["info"]["run_id"]
            ms = []
            for i in range(k + 1):
                t = time.perf_counter()
                r = client.get("/api/2.0/mlflow/metrics/get-history",
                               params={"run_id": first, "metric_key": "accuracy"})
                assert r.status_code == 200 and len(r.json()["metrics"]) == EPOCHS, r.text[:300]
                if i:
                    ms.append((time.perf_counter() - t) * 1000)
            out["run's epochs"] = (percentile(ms, 50), percentile(ms, 95))
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    return out, filled


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=10, help="timed requests per question (after one warm-up)")
    ap.add_argument("--mlflow", help="the mlflow command (default: .peer/bin/mlflow, then PATH)")
    args = ap.parse_args()
    figures, filled = measure(args.runs, args.requests, args.mlflow)
    print(f"MLflow, {args.runs:,} runs (filled in {filled:.0f} s), {args.requests} requests each over HTTP:")
    for label, (p50, p95) in figures.items():
        print(f"  {label:<34} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms")
    print(json.dumps({"load_average": os.getloadavg()[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
