"""Long-running processes: `fitboard worker`, `fitboard predictor`, `fitboard web`, and `fitboard up` (web +
worker + predictor + demo data)."""
from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys

from fitboard.app.core.settings import Settings
from fitboard.app.core.signal_stop import SignalStop
from fitboard.app.services.datasets import ensure_demo_dataset
from fitboard.app.services.queue import DEFAULT_QUEUE
from fitboard.app.store.db import session_scope
from fitboard.worker.cli.common import EXIT_INVALID, EXIT_OK, add_data_root, settings_from, store_engine
from fitboard.worker.cli.people import accounts_on


def cmd_worker(args) -> int:
    """Run one solo-pool Celery worker (one per GPU)."""
    if args.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(args.gpu)  # before torch is imported anywhere
    from fitboard.worker.factory import create_worker  # imports torch: only after CUDA_VISIBLE_DEVICES is set

    create_worker(settings_from(args)).run(args.queue)
    return EXIT_OK


def cmd_predictor(args) -> int:
    """Answer prediction requests with succeeded runs' models until Ctrl-C or SIGTERM."""
    if args.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(args.gpu)
    from fitboard.worker.predictor import Predictor  # imports torch and fastai

    settings = settings_from(args)
    stop = SignalStop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop.set)
    print("fitboard predictor: answering prediction requests (Ctrl-C stops)", flush=True)
    Predictor(store_engine(settings), settings).serve(stop)
    return EXIT_OK


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refuse_open_network(settings: Settings, host: str, insecure: bool) -> bool:
    """Without an API token or accounts the server is open: only loopback, unless the operator insists (says why on
    stderr).
    A token shorter than 32 characters is refused outright."""
    from fitboard.app.web.security import MIN_TOKEN_CHARS  # the web app's modules: only for the commands that serve

    if settings.api_token is not None and len(settings.api_token) < MIN_TOKEN_CHARS:
        print(f"refusing to start: FITBOARD_API_TOKEN has {len(settings.api_token)} characters; use at least "
              f"{MIN_TOKEN_CHARS}, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'", file=sys.stderr)
        return True
    if settings.api_token or insecure or is_loopback(host) or accounts_on(settings):
        return False
    print(f"refusing to listen on {host} without FITBOARD_API_TOKEN or accounts: anyone who reaches it could run "
          "code on your workers. Set FITBOARD_API_TOKEN, add a person (fitboard users add NAME --admin "
          "--password-stdin), or pass --insecure if the network is trusted.", file=sys.stderr)
    return True


def without_reconciler(app):
    """The event-stream process's app: its copy of the web app (same routes and access rules, forked: built and
    migrated once), without a reconciler of its own."""
    app.state.reconciles = False
    return app


def serve(settings: Settings, host: str, port: int) -> None:
    """Run the web app under uvicorn until Ctrl-C or SIGTERM; the bound host joins the allowed Host names."""
    # Imported here, not with the module: every fitboard command builds its parser from this module, and the web
    # app's import (routes, schemas, pages: half a second of CPU) is only for the commands that serve it.
    import uvicorn

    from fitboard.app.web.app import create_app
    from fitboard.app.web.handoff import HandingOver, fork_stream_process

    settings = settings.model_copy(update={"bind_host": host})
    app = create_app(settings)  # migrated, session secret written: the stream process forks a copy of it
    quiet = {"log_level": "warning", "access_log": False}
    http = "auto"
    if settings.stream_process:
        app.state.engine.dispose()  # no pooled connection is shared with the fork
        channel = fork_stream_process(lambda: without_reconciler(app), {**quiet, "timeout_graceful_shutdown": 5})
        if channel is not None:
            HandingOver.channel, http = channel, HandingOver
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, http=http, **quiet)).run()


def cmd_web(args) -> int:
    """The web process alone (workers run elsewhere)."""
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
    """Everything on one machine: schema, demo dataset, web server, one worker on the embedded broker, a predictor."""
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
    worker = subprocess.Popen([sys.executable, "-m", "fitboard.worker.cli", "worker", "--queue", args.queue], env=env)
    predictor = subprocess.Popen([sys.executable, "-m", "fitboard.worker.cli", "predictor"], env=env)
    print(f"fitboard is up: http://{args.host}:{args.port}  (Ctrl-C stops web, worker and predictor)", flush=True)
    try:
        serve(settings, args.host, args.port)
    finally:
        stop_process(predictor, grace=10.0)
        stop_process(worker)
    print("fitboard stopped", flush=True)
    return EXIT_OK


def add_commands(sub) -> None:
    """worker, up and web."""
    p = sub.add_parser("worker", help="run a training worker (one per GPU)")
    p.add_argument("--gpu", type=int, help="GPU index this worker owns (sets CUDA_VISIBLE_DEVICES)")
    p.add_argument("--queue", default=DEFAULT_QUEUE, help=f"queue to consume (default {DEFAULT_QUEUE})")
    p.set_defaults(func=cmd_worker)
    p = sub.add_parser("predictor", help="answer prediction requests with succeeded runs' models (needs torch)")
    p.add_argument("--gpu", type=int, help="GPU index to predict on (sets CUDA_VISIBLE_DEVICES); default: CPU or GPU 0")
    p.set_defaults(func=cmd_predictor)
    for name, helptext, func in (("up", "start everything: web, one worker, embedded broker, demo dataset", cmd_up),
                                 ("web", "start the web server alone", cmd_web)):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=8000)
        p.add_argument("--insecure", action="store_true", help="allow a non-loopback host without an API token")
        add_data_root(p)
        if name == "up":
            p.add_argument("--queue", default=DEFAULT_QUEUE)
        p.set_defaults(func=func)
