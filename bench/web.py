"""Web-side figures: SSE latency, JSON API throughput while a worker trains, and the runs page with 10,000 runs.

Prints figures; it is a benchmark, not a test.

1. SSE latency: p50/p95 milliseconds from an epoch row's commit (record_epoch in session_scope, clock read
   right after the commit returns) to the arrival of its `event: epoch` frame at a client (another process)
   streaming GET /api/v1/runs/{id}/events from a real `python -m fitboard.worker.cli web` server. Target p95 <= 250 ms.
2. API throughput: requests/s and p99 latency of GET /api/v1/runs/{id} against the same server while a real
   worker (`python -m fitboard.worker.cli worker`) trains recipes/demo.yaml on the digits data. Load from `wrk`
   (-t1 -c8, keep-alive) when installed, else an asyncio + httpx keep-alive client. When a target is missed,
   a second load window is profiled with py-spy (if installed) and the hot functions are printed.
   Targets: >= 1,000 req/s and p99 <= 50 ms.
3. Runs page: with 10,000 runs stored, the handler time of GET / (first page) and GET /api/v1/runs?limit=50,
   30 times each in-process through fastapi's TestClient; py-spy when the target is missed. Target <= 150 ms.

Usage:
    python bench/web.py [--rows 200] [--gap-ms 50] [--load-seconds 10] [--connections 8] [--load auto|wrk|httpx]
                        [--runs 10000] [--reps 30] [--profile auto|always|never] [--skip-sse] [--skip-api] [--skip-page]
"""
from __future__ import annotations

import argparse
import asyncio
import functools
import multiprocessing as mp
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_common import epoch_row, print_summary, run_state, wait_worker_ready  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from fitboard.app.core.events import ResultEvent  # noqa: E402
from fitboard.app.core.settings import Settings  # noqa: E402
from fitboard.app.core.status import FINISHED
from fitboard.app.store.db import make_engine, session_scope, upgrade  # noqa: E402
from fitboard.app.store.models import Run, utcnow  # noqa: E402
from fitboard.app.store.runs import claim_run, create_run, finish_run, record_epoch, request_cancel  # noqa: E402

SSE_TARGET_MS = 250.0
RPS_TARGET, P99_TARGET_MS = 1000.0, 50.0
PAGE_TARGET_MS = 150.0
FINAL = ResultEvent(metrics={"valid_loss": 0.1, "accuracy": 0.9, "error_rate": 0.1})
TRAIN_EPOCHS = 6  # stage 0 of the demo recipe stretched, so training outlasts both load windows


# ---------------------------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def verdict(ok: bool) -> str:
    """PASS or FAIL."""
    return "PASS" if ok else "FAIL"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fitboard_env(home: Path, db_url: str, data_root: Path) -> dict:
    """Environment for server and worker: temp home, database and data root; embedded broker, no token."""
    env = {**os.environ, "FITBOARD_HOME": str(home), "FITBOARD_DATABASE_URL": db_url,
           "FITBOARD_DATA_ROOT": str(data_root), "PYTHONUNBUFFERED": "1"}
    for key in ("FITBOARD_BROKER_URL", "FITBOARD_API_TOKEN"):
        env.pop(key, None)
    return env


def settings_for(home: Path, db_url: str, data_root: Path) -> Settings:
    """The same configuration as fitboard_env, as a Settings object for this process."""
    return Settings(home=home, database_url=db_url, data_root=data_root, broker_url=None, api_token=None)


def spawn(args: list[str], env: dict, log_path: Path, cwd: Path = ROOT) -> subprocess.Popen:
    """Start `python -m fitboard.worker.cli ARGS` in cwd (the repository root by default), logging to log_path."""
    return subprocess.Popen([sys.executable, "-m", "fitboard.worker.cli", *args], cwd=cwd, env=env,
                            stdout=open(log_path, "w"), stderr=subprocess.STDOUT)


def stop_process(proc: subprocess.Popen | None, grace: float = 15) -> None:
    """Stop a process this script started: SIGTERM, then SIGKILL if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_http(url: str, proc: subprocess.Popen, log_path: Path, timeout: float = 60) -> float:
    """Wait until url answers 200; returns the seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return time.perf_counter() - t0
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds used so far by pid and its live descendants, from /proc."""
    user = system = 0.0
    todo, tick = [pid], os.sysconf("SC_CLK_TCK")
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            user, system = user + int(fields[11]) / tick, system + int(fields[12]) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return user, system


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy (not idle or iowait) since boot, from /proc/stat."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process plus its finished children (a load generator run with subprocess.run)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def measure_cpu(pids: dict[str, int], window) -> tuple[dict, dict[str, tuple[float, float]]]:
    """Run window(); returns its result and the (user, system) cores of each pid, the load generator and the rest."""
    before = {k: cpu_times(p) for k, p in pids.items()}
    mine, busy, t0 = own_cpu_seconds(), machine_busy_seconds(), time.perf_counter()
    result = window()
    wall = time.perf_counter() - t0
    cores = {k: tuple((after - b) / wall for after, b in zip(cpu_times(p), before[k])) for k, p in pids.items()}
    cores["load generator"] = ((own_cpu_seconds() - mine) / wall, 0.0)
    ours = sum(u + s for u, s in cores.values())
    cores["other processes + kernel"] = (max(0.0, (machine_busy_seconds() - busy) / wall - ours), 0.0)
    return result, cores


def demo_recipe(epochs: int) -> dict:
    """recipes/demo.yaml with its first stage stretched to `epochs` epochs."""
    from fitboard.app.core.recipes import read_recipe_file

    recipe = read_recipe_file(ROOT / "recipes" / "demo.yaml")
    recipe["stages"][0] = {**recipe["stages"][0], "epochs": epochs}
    return recipe


# ---------------------------------------------------------------------------------------------------------------
# Part 1: SSE latency
# ---------------------------------------------------------------------------------------------------------------

def sse_client(url: str, ready, results) -> None:
    """In its own process: stream url, put (stage, epoch) -> arrival time.time() of each epoch frame on results."""
    import json

    import httpx

    arrivals, event, data = {}, None, []
    try:
        with httpx.stream("GET", url, timeout=httpx.Timeout(10, read=60)) as resp:
            for line in resp.iter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line == "":  # a blank line ends the frame: this is when the client has it
                    now = time.time()
                    if event == "epoch":
                        row = json.loads("".join(data))
                        arrivals[(row["stage"], row["epoch"])] = now
                    elif event == "status":
                        ready.set()  # the stream is live and the run is running
                    event, data = None, []
    finally:
        results.put(arrivals)


def bench_sse(engine, base: str, n: int, gap_s: float) -> list[str]:
    """Commit n epoch rows gap_s apart and time each one's arrival at an SSE client process."""
    with session_scope(engine) as session:
        run = create_run(session, demo_recipe(2), name="bench-sse", dataset="digits")
    with session_scope(engine) as session:
        claim_run(session, run.id, "bench")
    ctx = mp.get_context("spawn")
    ready, results = ctx.Event(), ctx.Queue()
    client = ctx.Process(target=sse_client, args=(f"{base}/api/v1/runs/{run.id}/events", ready, results), daemon=True)
    client.start()
    committed = {}
    try:
        if not ready.wait(30):
            raise RuntimeError("the SSE client saw no status event within 30 s")
        print(f"sse: client streaming run {run.id}; committing {n} epoch rows {gap_s * 1000:.0f} ms apart", flush=True)
        next_at = time.perf_counter()
        for i in range(n):
            with session_scope(engine) as session:
                record_epoch(session, run.id, epoch_row(i))
            committed[(0, i)] = time.time()  # right after the commit returned
            next_at += gap_s
            time.sleep(max(0.0, next_at - time.perf_counter()))
        with session_scope(engine) as session:
            finish_run(session, run.id, FINAL)  # the stream sends the status and ends
        arrivals = results.get(timeout=30)
    finally:
        client.join(10)
        if client.is_alive():
            client.kill()
    from fitboard.app.web.sse import POLL_SECONDS

    ms = [(arrivals[k] - t) * 1000 for k, t in committed.items() if k in arrivals]
    p95 = percentile(ms, 95)
    return [f"SSE commit -> client: p50 {percentile(ms, 50):.1f} ms, p95 {p95:.1f} ms, max {max(ms):.1f} ms, "
            f"min {min(ms):.1f} ms (received {len(ms)}/{n}; target p95 <= {SSE_TARGET_MS:g} ms: "
            f"{verdict(p95 <= SSE_TARGET_MS and len(ms) == n)})",
            f"  the stream polls the database every {POLL_SECONDS * 1000:.0f} ms (fitboard.app.web.sse.POLL_SECONDS), "
            "so latency is spread over one poll interval plus delivery"]


# ---------------------------------------------------------------------------------------------------------------
# Part 2: API throughput while a worker trains
# ---------------------------------------------------------------------------------------------------------------

def submit_training(engine, settings: Settings, queue: str, epochs: int) -> int:
    """Store the demo recipe (first stage stretched to `epochs`) and enqueue it; returns the run id."""
    from fitboard.app.services import runs
    from fitboard.app.services.queue import Publisher, make_celery

    publisher = Publisher(make_celery(settings), queue=queue)
    with session_scope(engine) as session:
        return runs.submit(session, publisher, {**demo_recipe(epochs), "name": "bench-train"}, settings.data_root).id


def wait_training(engine, run_id: int, timeout: float = 180) -> float:
    """Wait for the run's first optimizer step (a batch in its progress); returns the seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        status, progress, error = run_state(engine, run_id)
        if progress and progress.get("batch"):
            return time.perf_counter() - t0
        if status in FINISHED:
            raise RuntimeError(f"training run {run_id} ended {status} before its first step: {error}")
        time.sleep(0.2)
    raise RuntimeError(f"training run {run_id} took no step within {timeout:.0f} s")


def wrk_ms(text: str) -> float:
    """A wrk duration ("812.00us", "3.21ms", "1.02s") in milliseconds."""
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def load_wrk(url: str, seconds: int, connections: int) -> dict:
    """One wrk window (-t1, keep-alive): requests/s, p50/p99 ms, errors."""
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    pct = {int(p): wrk_ms(v) for p, v in re.findall(r"^\s+(\d+)%\s+(\S+)\s*$", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    return {"tool": f"wrk -t1 -c{connections} -d{seconds}s --latency (keep-alive)",
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "p50": pct[50], "p99": pct[99], "errors": int(errors.group(1)) if errors else 0,
            "socket_errors": sock.group(1) if sock else None}


async def _httpx_load(url: str, seconds: float, connections: int) -> tuple[list[float], int, float]:
    """`connections` keep-alive clients GETting url back to back; returns latencies ms, errors and wall seconds."""
    import httpx

    latencies, errors = [], 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        t0 = time.perf_counter()
        end = t0 + seconds

        async def loop():
            """One connection's requests, back to back until the window ends."""
            nonlocal errors
            while time.perf_counter() < end:
                start = time.perf_counter()
                resp = await client.get(url)
                latencies.append((time.perf_counter() - start) * 1000)
                errors += resp.status_code != 200

        await asyncio.gather(*(loop() for _ in range(connections)))
        return latencies, errors, time.perf_counter() - t0


def load_httpx(url: str, seconds: int, connections: int) -> dict:
    """One asyncio + httpx window: requests/s, p50/p99 ms, errors."""
    latencies, errors, wall = asyncio.run(_httpx_load(url, seconds, connections))
    return {"tool": f"asyncio + httpx, {connections} keep-alive connections, {seconds} s", "rps": len(latencies) / wall,
            "requests": len(latencies), "p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
            "errors": errors, "socket_errors": None}


# Plumbing every sample passes through (threads, event loop, thread pool, process entry): hidden from the top list.
PLUMBING = ("threading", "asyncio", "selectors", "concurrent", "queue", "runpy", "<frozen", "anyio", "uvicorn.server",
            "uvicorn.main", "uvicorn._compat", "fitboard:worker", "fitboard:bench")
WAITS = ("threading", "queue", "selectors")  # a sample whose innermost frame is here is a thread parked on a lock
# ASGI pass-through frames (every middleware's __call__): on nearly every stack, so hidden from the inclusive list.
PASS_THROUGH = re.compile(r"(__call__|wrapped_app|\.app|run_asgi|request_response\..*|handle|_handle_selected|"
                          r"<locals>\.(send_wrapper|_send|sender))$")


def parse_frame(frame: str) -> tuple[str, str]:
    """A py-spy raw frame 'func (/path/to/file.py:12)' as (package, 'module.func')."""
    m = re.match(r"(.*) \((.*?):\d+\)$", frame)
    if not m:
        return "?", frame
    func, path = m.groups()
    name = f"{Path(path).stem}.{func}"
    if "site-packages/" in path:
        parts = path.split("site-packages/", 1)[1].split("/")
        return (f"{parts[0]}.{Path(parts[1]).stem}" if parts[0] == "uvicorn" and len(parts) > 1 else parts[0]), name
    if path.startswith(str(ROOT)):
        return f"fitboard:{Path(path).relative_to(ROOT).parts[0]}", name
    lib = re.search(r"/lib/python3\.\d+/(.*)", path)
    return (Path(lib.group(1)).parts[0].removesuffix(".py") if lib else path), name


def profile_summary(raw: Path, top: int = 15) -> list[str]:
    """Top inclusive functions (minus plumbing), leaf packages and threads from a py-spy raw (--gil) profile."""
    inclusive, leaf_pkg, leaf, threads, total, parked = Counter(), Counter(), Counter(), Counter(), 0, 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n, frames = int(count), stack.split(";")
        thread = frames.pop(0).split(": ", 1)[-1] if frames[0].startswith("thread (") else "?"
        parsed = [parse_frame(f) for f in frames]
        if not parsed or parsed[-1][0].startswith(WAITS):
            parked += n
            continue
        total += n
        threads[thread] += n
        for name in {name for pkg, name in parsed if not pkg.startswith(PLUMBING) and not PASS_THROUGH.search(name)}:
            inclusive[name] += n
        leaf_pkg[parsed[-1][0]] += n
        leaf[parsed[-1][1]] += n
    if not total:
        return ["  (py-spy recorded no busy samples)"]
    pct = lambda c: f"{100 * c / total:5.1f}%"  # noqa: E731
    return [f"  {total} busy samples while a thread held the GIL ({parked} more parked on locks/queues/select, "
            "left out); by thread: " + ", ".join(f"{t} {pct(c).strip()}" for t, c in threads.most_common(6)),
            "  inclusive share by function (a sample counts for every function on its stack; "
            "thread/loop plumbing and ASGI middleware pass-through frames hidden):",
            *(f"    {pct(c)}  {name}" for name, c in inclusive.most_common(top)),
            "  self share by package (the package of each sample's innermost frame):",
            *(f"    {pct(c)}  {pkg}" for pkg, c in leaf_pkg.most_common(10)),
            "  self share by function (innermost Python frame; C calls it makes count here too):",
            *(f"    {pct(c)}  {name}" for name, c in leaf.most_common(top))]


def profile_process(pid: int, run_load, seconds: int, work: Path) -> list[str]:
    """Sample pid with py-spy while run_load() drives a load window; returns summary lines."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return ["  py-spy not installed (pip install py-spy): no profile"]
    raw = work / f"pyspy-{pid}-{time.monotonic_ns()}.txt"
    # --gil: only the thread holding the GIL is sampled, i.e. the Python work that a single process serialises.
    cmd = [spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "200", "--nonblocking", "--gil",
           "--threads", "--full-filenames", "--format", "raw", "--output", str(raw)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)  # let py-spy attach before the load starts
    try:
        under = run_load()
    finally:
        _, err = proc.communicate(timeout=seconds + 60)
    if not raw.exists():
        return [f"  py-spy failed: {err.strip()[-500:]}"]
    return [f"  load under the profiler: {under['rps']:.0f} req/s, p99 {under['p99']:.1f} ms",
            *profile_summary(raw)]


def hop_name(func) -> str:
    """A readable name for a callable handed to the thread pool (partials unwrapped, endpoints named)."""
    while isinstance(func, functools.partial):
        func = func.keywords.get("function", func.func)
    return getattr(func, "__qualname__", type(func).__name__)


def thread_hops(settings: Settings, paths: list[str]) -> list[str]:
    """Count the thread-pool round trips (anyio.to_thread.run_sync) one request to each path makes, in-process."""
    import anyio.to_thread
    from fastapi.testclient import TestClient

    from fitboard.app.web.app import create_app

    calls, original = [], anyio.to_thread.run_sync

    async def counting(func, *args, **kwargs):
        """anyio.to_thread.run_sync that records what it runs."""
        calls.append(hop_name(func))
        return await original(func, *args, **kwargs)

    lines = ["  thread-pool round trips per request (each wakes a worker thread and hands the GIL over twice):"]
    anyio.to_thread.run_sync = counting
    try:
        with TestClient(create_app(settings)) as client:
            for path in paths:
                client.get(path)  # warm
                calls.clear()
                client.get(path)
                lines.append(f"    GET {path}: {len(calls)} ({', '.join(calls)})")
    finally:
        anyio.to_thread.run_sync = original
    return lines


def load_function(args, url: str):
    """A no-argument callable running one load window against url (wrk when asked or found, else httpx)."""
    if args.load == "wrk" or (args.load == "auto" and shutil.which("wrk")):
        return lambda: load_wrk(url, args.load_seconds, args.connections)
    return lambda: load_httpx(url, args.load_seconds, args.connections)


def load_lines(label: str, r: dict, cores: dict[str, tuple[float, float]], target: bool) -> list[str]:
    """Summary lines of one load window: throughput, latency, and who used the CPU."""
    errors = f"{r['errors']} non-200" + (f", socket errors {r['socket_errors']}" if r["socket_errors"] else "")
    ok = r["rps"] >= RPS_TARGET and r["p99"] <= P99_TARGET_MS
    head = (f"GET {label}: {r['rps']:.0f} req/s, p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms "
            f"({r['requests']} requests, {errors})")
    if target:
        head += f"; target >= {RPS_TARGET:g} req/s and p99 <= {P99_TARGET_MS:g} ms: {verdict(ok)}"
    user, system = cores["server"]
    used = ", ".join(f"{k} {u + s:.2f}" for k, (u, s) in cores.items() if k != "server")
    return [head, f"  CPU cores used (machine has {os.cpu_count()}): server {user + system:.2f} (user {user:.2f} + "
            f"system {system:.2f}; {1000 * (user + system) / max(r['rps'], 1e-9):.2f} ms CPU per request), {used}"]


def bench_api(args, engine, settings: Settings, env: dict, base: str, server: subprocess.Popen,
              work: Path) -> list[str]:
    """Load GET /api/v1/runs/{id} with nothing training (baseline), then while a real worker trains it."""
    queue = f"bench-web-{uuid.uuid4().hex[:8]}"
    run_id = submit_training(engine, settings, queue, args.train_epochs)  # queued; no worker consumes it yet
    url = f"{base}/api/v1/runs/{run_id}"
    load = load_function(args, url)
    print(f"api: baseline windows on {url} and /healthz (no worker running)", flush=True)
    r, cores = measure_cpu({"server": server.pid}, load)
    lines = [f"load generator: {r['tool']}",
             *load_lines("/api/v1/runs/{id}, baseline with nothing training", r, cores, target=False)]
    r, cores = measure_cpu({"server": server.pid}, load_function(args, f"{base}/healthz"))
    lines += load_lines("/healthz (framework floor: same middleware, sync route, SELECT 1), nothing training",
                        r, cores, target=False)
    log = work / "worker.log"
    print(f"api: starting a worker on queue {queue} (log {log})", flush=True)
    worker = spawn(["worker", "--queue", queue], env, log)
    try:
        print(f"api: worker ready after {wait_worker_ready(engine, worker, log, timeout=180):.1f} s; "
              f"first optimizer step after {wait_training(engine, run_id):.1f} s more", flush=True)
        r, cores = measure_cpu({"server": server.pid, "worker": worker.pid}, load)
        status, progress, _ = run_state(engine, run_id)
        batch = (progress or {}).get("batch") or {}
        lines += load_lines("/api/v1/runs/{id} while the worker trains", r, cores, target=True)
        lines.append(f"  training run {run_id} was still {status} after the window "
                     f"(stage {batch.get('stage')}, epoch {batch.get('epoch')}, batch {batch.get('batch')})")
        ok = r["rps"] >= RPS_TARGET and r["p99"] <= P99_TARGET_MS
        if args.profile == "always" or (args.profile == "auto" and not ok):
            print("api: profiling the server with py-spy during a second window while training", flush=True)
            lines += ["server profile (py-spy on the web process, second window while training):",
                      *profile_process(server.pid, load, args.load_seconds, work),
                      *thread_hops(settings, [f"/api/v1/runs/{run_id}", "/healthz"])]
        with session_scope(engine) as session:
            if run_state(engine, run_id)[0] not in FINISHED:
                request_cancel(session, run_id)
    finally:
        stop_process(worker, grace=30)
    return lines


# ---------------------------------------------------------------------------------------------------------------
# Part 3: the runs page with 10,000 runs
# ---------------------------------------------------------------------------------------------------------------

RECIPE_NAMES = ("baseline", "normalize", "progressive", "mixup", "label-smoothing", "tta", "presize", "lr-find",
                "discriminative", "fine-tune")
DATASETS = ("cassava", "imagenette", "digits", "pets", "flowers")
ARCHS = ("resnet18", "resnet34", "resnet50", "densenet121")


def fake_spec(rng: random.Random, name: str, dataset: str) -> dict:
    """A validated RunSpec dict with a random mix of chapter-7 techniques, and its technique chips."""
    from fitboard.app.core.schemas import RunSpec

    grow = rng.random() < 0.5
    stages = [{"epochs": rng.randint(2, 15), "size": 224, "presize": 460 if rng.random() < 0.6 else 224, "bs": 64,
               "freeze": rng.random() < 0.5, "lr": rng.choice(["find", 1e-3, 3e-3])}]
    if grow or rng.random() < 0.5:
        stages.append({"epochs": rng.randint(2, 20), "size": 448 if grow else 224, "presize": 560 if grow else 224,
                       "bs": 32, "freeze": False, "lr": [1e-6, 1e-4], "mixup": 0.2 if rng.random() < 0.3 else None})
    spec = {"name": name, "dataset": dataset, "arch": rng.choice(ARCHS), "pretrained": False,
            "normalize": rng.choice(["none", "imagenet", "dataset"]),
            "label_smoothing": 0.1 if rng.random() < 0.4 else None, "seed": 42, "precision": "fp32",
            "keep_best": rng.choice([None, "accuracy"]),
            "tta": {"n": 4, "use_max": False} if rng.random() < 0.4 else None, "stages": stages}
    parsed = RunSpec.model_validate(spec)
    return {"spec": parsed.model_dump(mode="json"), "techniques": parsed.techniques()}


def fake_outcome(rng: random.Random, i: int, status: str, has_tta: bool) -> dict:
    """The columns a run of this status has filled in: worker, error, result, progress, headline metrics."""
    acc = round(rng.uniform(0.55, 0.97), 4) if status == "succeeded" else None
    tta = round(min(0.99, acc + rng.uniform(-0.01, 0.02)), 4) if acc and has_tta else None
    failed = status == "failed"
    return {"worker": None if status == "queued" else f"gpu-host-{i % 4}:{1000 + i % 4}",
            "attempt": 0 if status == "queued" else 1, "cancel_requested": status == "cancelled",
            "error": "CUDA out of memory. Tried to allocate 2.00 GiB" if failed else None,
            "traceback": "Traceback (most recent call last):\n  ...\ntorch.OutOfMemoryError\n" * 10 if failed else None,
            "result": {"metrics": {"valid_loss": round(1 - acc, 4), "accuracy": acc, "error_rate": 1 - acc},
                       "tta": {"accuracy": tta} if tta else None,
                       "best": {"stage": 0, "epoch": 3, "accuracy": acc}} if acc else None,
            "progress": {"batch": {"stage": 0, "epoch": 1, "batch": 10, "total": 100}} if status == "running" else None,
            "best_accuracy": acc, "tta_accuracy": tta,
            "model_path": f"/srv/fitboard/artifacts/{i}/model.pkl" if acc else None}


def fake_runs(n: int, seed: int = 0) -> list[dict]:
    """n Run rows: 60% succeeded, 15% failed, 10% cancelled, 10% queued, 5% running, created over 90 days."""
    rng, specs, now, rows = random.Random(seed), {}, utcnow(), []
    for i in range(n):
        key = (rng.choice(RECIPE_NAMES), rng.choice(DATASETS), rng.randrange(40))  # up to 2,000 distinct recipes
        if key not in specs:
            specs[key] = fake_spec(rng, f"{key[1]}-{key[0]}", key[1])
        spec = specs[key]["spec"]
        status = rng.choices(["succeeded", "failed", "cancelled", "queued", "running"], [60, 15, 10, 10, 5])[0]
        created = now - timedelta(days=90) * (1 - i / n) - timedelta(seconds=rng.random() * 60)
        started = None if status == "queued" else created + timedelta(seconds=rng.uniform(1, 300))
        ended = status in ("succeeded", "failed", "cancelled")
        rows.append({"name": f"{spec['name']}-{i}", "dataset": key[1], "spec": spec, "status": status,
                     "techniques": specs[key]["techniques"], "created_at": created, "started_at": started,
                     "finished_at": started + timedelta(seconds=rng.uniform(60, 7200)) if ended else None,
                     **fake_outcome(rng, i, status, bool(spec["tta"]))})
    return rows


def time_get(client, path: str, reps: int) -> tuple[list[float], int]:
    """Milliseconds of reps GETs of path after 3 unmeasured ones; also the body size in bytes."""
    for _ in range(3):
        resp = client.get(path)
        if resp.status_code != 200:
            raise RuntimeError(f"GET {path} answered {resp.status_code}: {resp.text[:500]}")
    ms = []
    for _ in range(reps):
        t0 = time.perf_counter()
        client.get(path)
        ms.append((time.perf_counter() - t0) * 1000)
    return ms, len(resp.content)


def profile_page(client, path: str, seconds: int, work: Path) -> list[str]:
    """py-spy on this process (the TestClient runs the app in a thread here) while it GETs path for seconds."""
    def hammer() -> dict:
        """GET path back to back for `seconds`; the load figures."""
        ms, end = [], time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            client.get(path)
            ms.append((time.perf_counter() - t0) * 1000)
        return {"rps": len(ms) / seconds, "p99": percentile(ms, 99)}

    return [f"  profile of GET {path} (py-spy on this process):", *profile_process(os.getpid(), hammer, seconds, work)]


def bench_page(args, work: Path) -> list[str]:
    """Bulk-insert args.runs runs, then time GET / and GET /api/v1/runs?limit=50 in-process."""
    from fastapi.testclient import TestClient

    from fitboard.app.web.app import create_app

    home = work / "page-home"
    url = f"sqlite:///{home / 'fitboard.db'}"
    upgrade(url)
    engine = make_engine(url)
    t0 = time.perf_counter()
    rows = fake_runs(args.runs)
    with engine.begin() as conn:
        conn.execute(insert(Run.__table__), rows)
    counts = Counter(r["status"] for r in rows)
    print(f"page: inserted {len(rows)} runs in {time.perf_counter() - t0:.1f} s ({dict(counts)})", flush=True)
    engine.dispose()
    lines = ["runs page timings: in-process TestClient, perf_counter around client.get (includes the test "
             "client's own overhead)"]
    with TestClient(create_app(settings_for(home, url, work / "datasets"))) as client:
        for path in ("/", "/api/v1/runs?limit=50"):
            ms, size = time_get(client, path, args.reps)
            p95 = percentile(ms, 95)
            lines.append(f"GET {path} with {len(rows)} runs: p50 {percentile(ms, 50):.1f} ms, p95 {p95:.1f} ms, "
                         f"max {max(ms):.1f} ms ({args.reps} requests, {size} bytes; target <= {PAGE_TARGET_MS:g} ms: "
                         f"{verdict(p95 <= PAGE_TARGET_MS)})")
            if args.profile == "always" or (args.profile == "auto" and p95 > PAGE_TARGET_MS):
                lines += profile_page(client, path, 5, work)
    return lines


# ---------------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=200, help="epoch rows to stream (part 1)")
    p.add_argument("--gap-ms", type=float, default=50, help="milliseconds between epoch-row commits (part 1)")
    p.add_argument("--load-seconds", type=int, default=10, help="length of each load window (part 2)")
    p.add_argument("--connections", type=int, default=8, help="keep-alive connections of the load generator")
    p.add_argument("--load", choices=["auto", "wrk", "httpx"], default="auto",
                   help="load generator (auto: wrk if found)")
    p.add_argument("--train-epochs", type=int, default=TRAIN_EPOCHS,
                   help="epochs of the demo recipe's first stage, so training outlasts the load windows")
    p.add_argument("--runs", type=int, default=10_000, help="runs stored for part 3")
    p.add_argument("--reps", type=int, default=30, help="timed requests per page (part 3)")
    p.add_argument("--profile", choices=["auto", "always", "never"], default="auto",
                   help="profile the server when a target is missed (auto), always, or never")
    p.add_argument("--skip-sse", action="store_true")
    p.add_argument("--skip-api", action="store_true")
    p.add_argument("--skip-page", action="store_true")
    return p.parse_args(argv)


def serve_parts(args, work: Path) -> list[str]:
    """Parts 1 and 2 against one `fitboard.worker.cli web` server; returns summary lines."""
    from fitboard.app.core.demo_data import write_digits

    home, data_root = work / "home", work / "datasets"
    write_digits(data_root / "digits")
    db_url = f"sqlite:///{home / 'fitboard.db'}"
    upgrade(db_url)
    env, settings = fitboard_env(home, db_url, data_root), settings_for(home, db_url, data_root)
    engine = make_engine(db_url)
    port, log = free_port(), work / "web.log"
    base = f"http://127.0.0.1:{port}"
    server = spawn(["web", "--port", str(port)], env, log)
    lines = []
    try:
        up_s = wait_http(base + "/healthz", server, log)
        print(f"web: `python -m fitboard.worker.cli web --port {port}` up after {up_s:.1f} s", flush=True)
        if not args.skip_sse:
            lines += bench_sse(engine, base, args.rows, args.gap_ms / 1000)
        if not args.skip_api:
            lines += bench_api(args, engine, settings, env, base, server, work)
    finally:
        stop_process(server)
        engine.dispose()
    return lines


def main(argv=None) -> int:
    """Run the three parts and print the summary."""
    args = parse_args(argv)
    t0 = time.perf_counter()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start", flush=True)
    summary = []
    with tempfile.TemporaryDirectory(prefix="fitboard-bench-web-") as tmp:
        work = Path(tmp)
        if not (args.skip_sse and args.skip_api):
            summary += serve_parts(args, work)
        if not args.skip_page:
            summary += bench_page(args, work)
    return print_summary(summary, t0, f"; load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    sys.exit(main())
