"""Long-running processes: a training worker, the web server, and `up` (web + worker + demo data)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

from worker.cli_common import EXIT_OK


def cmd_worker(args) -> int:
    """Run one solo-pool Celery worker (one per GPU)."""
    import os

    if args.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(args.gpu)  # before torch is imported anywhere
    from worker.tasks import run_worker

    run_worker(args.queue)
    return EXIT_OK


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refuse_open_network(settings, host: str, insecure: bool) -> bool:
    """Without an API token the server is open: only loopback, unless the operator insists (says why on stderr)."""
    if settings.api_token or insecure or is_loopback(host):
        return False
    print(f"refusing to listen on {host} without FITBOARD_API_TOKEN: anyone who reaches it could run code on "
          "your workers. Set FITBOARD_API_TOKEN, or pass --insecure if the network is trusted.", file=sys.stderr)
    return True


def serve(settings, host: str, port: int) -> None:
    """Run the web app under uvicorn until Ctrl-C or SIGTERM."""
    import uvicorn

    from app.web import create_app

    uvicorn.Server(uvicorn.Config(create_app(settings), host=host, port=port, log_level="warning",
                                  access_log=False)).run()


def cmd_web(args) -> int:
    """The web process alone (workers run elsewhere)."""
    from worker.cli_common import EXIT_INVALID, settings_from

    settings = settings_from(args)
    if refuse_open_network(settings, args.host, args.insecure):
        return EXIT_INVALID
    print(f"fitboard web on http://{args.host}:{args.port}", flush=True)
    serve(settings, args.host, args.port)
    return EXIT_OK


def stop_process(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM (the worker stops its run within a batch), then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _raise_exit(signum, frame) -> None:
    """SIGTERM as SystemExit, so cleanup code runs."""
    raise SystemExit(0)


def cmd_up(args) -> int:
    """Everything on one machine: schema, demo dataset, web server and one worker on the embedded broker."""
    from app.db import session_scope
    from app.demo_data import ensure_demo_dataset
    from worker.cli_common import EXIT_INVALID, settings_from, store_engine

    settings = settings_from(args)
    if refuse_open_network(settings, args.host, args.insecure):
        return EXIT_INVALID
    engine = store_engine(settings)
    with session_scope(engine) as session:
        registered = ensure_demo_dataset(session, settings.data_root)
    engine.dispose()
    if registered:
        print(f"registered the demo dataset {registered!r} under {settings.data_root}", flush=True)
    # uvicorn re-raises the SIGTERM it caught once it has shut down: make that an exception, so the
    # finally below still stops the worker instead of the process dying with the worker orphaned.
    signal.signal(signal.SIGTERM, _raise_exit)
    env = {**os.environ, "FITBOARD_DATA_ROOT": str(settings.data_root)}  # --data-root reaches the worker too
    worker = subprocess.Popen([sys.executable, "-m", "worker.cli", "worker", "--queue", args.queue], env=env)
    print(f"fitboard is up: http://{args.host}:{args.port}  (Ctrl-C stops web and worker)", flush=True)
    try:
        serve(settings, args.host, args.port)
    finally:
        stop_process(worker)
    print("fitboard stopped", flush=True)
    return EXIT_OK
