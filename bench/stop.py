"""How long fitboard's processes take to stop: an idle worker on SIGTERM, on the embedded broker and on Redis, and
`fitboard up` on Ctrl-C (SIGINT to its whole process group, as a terminal sends it).

Each process is started under a fresh FITBOARD_HOME, left idle until ready, then signalled; prints the seconds from
the signal to the exit, min / median / max over --repeat tries.

    .venv/bin/python bench/stop.py [--repeat 3] [--redis redis://127.0.0.1:6379/15] [--port 8131] [--tree DIR]

--tree: the checkout whose code runs (python -m from its root imports its fitboard package), to set an older commit
(`git worktree add /tmp/before COMMIT`) beside this one.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [sys.executable, "-m", "fitboard.worker.cli"]


def started(args: list[str], home: Path, ready: tuple[str, ...], env: dict, tree: Path,
            timeout: float = 180) -> subprocess.Popen:
    """The command, in its own process group, once every line of `ready` is in its log (then 2 s of idling)."""
    log = home / "out.log"
    proc = subprocess.Popen(CLI + args, env={**env, "FITBOARD_HOME": str(home)}, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True, cwd=tree)
    deadline = time.monotonic() + timeout
    while not all(marker in log.read_text() for marker in ready):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{' '.join(args)} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    time.sleep(2)
    return proc


def stop_seconds(proc: subprocess.Popen, sig: int, group: bool) -> float:
    """Seconds from the signal until the process exited."""
    t0 = time.perf_counter()
    os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
    proc.wait(timeout=120)
    return time.perf_counter() - t0


def measure(label: str, args: list[str], ready: tuple[str, ...], sig: int, group: bool, env: dict,
            opts: argparse.Namespace) -> None:
    """Start, idle and signal the command --repeat times; print min, median and max seconds to its exit."""
    times = []
    for _ in range(opts.repeat):
        with tempfile.TemporaryDirectory(prefix="fitboard-stop-") as home:
            times.append(stop_seconds(started(args, Path(home), ready, env, opts.tree), sig, group))
    print(f"{label:<44} {min(times):6.2f} {statistics.median(times):6.2f} {max(times):6.2f}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--redis", default="redis://127.0.0.1:6379/15", help="a Redis broker for the second case")
    p.add_argument("--port", type=int, default=8131, help="where `fitboard up` listens")
    p.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent, help="the checkout to run")
    args = p.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FITBOARD_")}
    print(f"code: {args.tree}\n{'seconds from the signal to the exit':<44} {'min':>6} {'p50':>6} {'max':>6}")
    measure("idle worker, embedded broker, SIGTERM", ["worker"], ("ready.",), signal.SIGTERM, False, env, args)
    measure("idle worker, Redis, SIGTERM", ["worker"], ("ready.",), signal.SIGTERM, False,
            {**env, "FITBOARD_BROKER_URL": args.redis}, args)
    measure("fitboard up, Ctrl-C (SIGINT to the group)", ["up", "--port", str(args.port)],
            ("ready.", "predictor: answering"), signal.SIGINT, True, env, args)


if __name__ == "__main__":
    main()
