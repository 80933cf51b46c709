"""Two versions of fitboard side by side on one database: a `fitboard web` from each checkout, the same requests sent
to each in turn (so both see the same load), p50 wall time of each, the ratio, and each server's CPU time per request
(less moved by other work on the machine than the wall time).

    git worktree add /tmp/before <commit>
    python bench/code_ab.py /tmp/before . sqlite:////tmp/scale/10k.db /api/v1/runs '/api/v1/runs?tag=x' /runs

Each server runs from its checkout (PYTHONPATH=CHECKOUT; this interpreter's packages) with a home of its own and no
token. The database must be filled and migrated already (bench/scale.py --fill-only) and at a revision both
versions read.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
from web import cpu_times, fitboard_env, free_port, spawn, stop_process, wait_http  # noqa: E402


def serve(checkout: Path, db_url: str, work: Path):
    """A `fitboard web` from checkout on db_url; (process, base URL). It starts in a folder of its own: `python -m`
    puts its working folder first on the path, and a checkout there would win over PYTHONPATH."""
    port, home = free_port(), Path(tempfile.mkdtemp(dir=work))
    env = {**fitboard_env(home, db_url, home / "data"), "PYTHONPATH": str(checkout.resolve())}
    proc = spawn(["web", "--port", str(port)], env, home / "web.log", cwd=work)
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/healthz", proc, home / "web.log")
    return proc, base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, help="checkout of the first version")
    parser.add_argument("after", type=Path, help="checkout of the second version")
    parser.add_argument("database_url")
    parser.add_argument("paths", nargs="+", help="request paths, e.g. /api/v1/runs?tag=x")
    parser.add_argument("--requests", type=int, default=60, help="requests per path and version (after 10 warm-up)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        servers = [serve(args.before, args.database_url, Path(work)), serve(args.after, args.database_url, Path(work))]
        try:
            with httpx.Client(timeout=60) as client:
                def timed(base: str, path: str) -> float:
                    start = time.perf_counter()
                    response = client.get(base + path)
                    response.raise_for_status()
                    return (time.perf_counter() - start) * 1000

                print(f"{'path':55s} {'before':>9s} {'after':>9s}  after/before   cpu ms/request before, after")
                for path in args.paths:
                    for _, base in servers:
                        for _ in range(10):
                            timed(base, path)
                    times: list[list[float]] = [[], []]
                    cpu_start = [sum(cpu_times(proc.pid)) for proc, _ in servers]
                    for _ in range(args.requests):
                        for i, (_, base) in enumerate(servers):
                            times[i].append(timed(base, path))
                    cpu = [(sum(cpu_times(proc.pid)) - start) * 1000 / args.requests
                           for (proc, _), start in zip(servers, cpu_start)]
                    before, after = statistics.median(times[0]), statistics.median(times[1])
                    print(f"{path:55s} {before:6.1f} ms {after:6.1f} ms  x{after / before:.2f}"
                          f"          {cpu[0]:5.1f}, {cpu[1]:5.1f} (x{cpu[1] / cpu[0]:.2f})")
        finally:
            for proc, _ in servers:
                stop_process(proc)


if __name__ == "__main__":
    main()
