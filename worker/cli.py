"""The fitboard command line: every subcommand's arguments, and the foreground `train` and `demo-data`."""
from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from app.schemas import RecipeError
from worker.cli_common import EXIT_FAILED, EXIT_INVALID, EXIT_OK, DEFAULT_QUEUE, settings_from, store_engine
from worker import cli_serve, cli_store, cli_submit


def _resolve_with_registry(spec, settings):
    """The recipe's dataset, looking up registered names when this machine has a fitboard database."""
    from app.datasets import resolve_dataset

    if settings.database_url is None and not (settings.home / "fitboard.db").exists():
        return resolve_dataset(spec.dataset, settings.data_root, seed=spec.seed)  # no store: folders only
    from app.db import session_scope
    from app.submit import registry_for

    engine = store_engine(settings)
    try:
        with session_scope(engine) as session:
            return resolve_dataset(spec.dataset, settings.data_root, seed=spec.seed, registry=registry_for(session))
    finally:
        engine.dispose()


def cmd_train(args) -> int:
    """Run a recipe here and now, printing the epoch table (or JSON lines)."""
    from app.recipes import load_recipe
    from worker.reporting import ConsoleReporter, JsonReporter

    settings = settings_from(args)
    reporter = JsonReporter() if args.json else ConsoleReporter()
    try:
        spec = load_recipe(args.recipe)
        dataset = _resolve_with_registry(spec, settings)
    except RecipeError as exc:
        reporter.emit({"event": "error", "message": str(exc), "problems": exc.problems})
        return EXIT_INVALID
    from worker.engine import run_recipe  # fastai loads only once recipe and dataset are known good

    out_dir = Path(args.out) if args.out else settings.home / "cli-runs" / spec.name
    try:
        run_recipe(spec, reporter, settings.data_root, out_dir, dataset=dataset, num_workers=settings.num_workers)
    except KeyboardInterrupt:
        reporter.emit({"event": "error", "message": "interrupted"})
        return EXIT_FAILED
    except Exception as exc:  # a failed run reports its message and traceback tail, never a bare crash
        reporter.emit({"event": "error", "message": f"{type(exc).__name__}: {exc}",
                       "traceback": "".join(traceback.format_exc().splitlines(True)[-20:])})
        return EXIT_FAILED
    return EXIT_OK


def cmd_demo_data(args) -> int:
    """Write scikit-learn's digits as a Cassava-layout dataset."""
    from app.demo_data import write_digits

    target = Path(args.dir) if args.dir else settings_from(args).data_root / "digits"
    write_digits(target, limit=args.limit)
    print(f"wrote the digits demo dataset to {target}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """All subcommands and their options."""
    parser = argparse.ArgumentParser(prog="fitboard", description="Launch and compare fastai training runs.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="run a recipe in the foreground")
    p.add_argument("recipe", help="recipe file (YAML or JSON)")
    p.add_argument("--data-root", help="datasets folder (default $FITBOARD_DATA_ROOT)")
    p.add_argument("--out", help="folder for the exported model and reports (default $FITBOARD_HOME/cli-runs/NAME)")
    p.add_argument("--json", action="store_true", help="print one JSON object per event instead of a table")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("demo-data", help="write the digits demo dataset in the Cassava layout")
    p.add_argument("dir", nargs="?", help="target folder (default $FITBOARD_DATA_ROOT/digits)")
    p.add_argument("--data-root", help="datasets folder (default $FITBOARD_DATA_ROOT)")
    p.add_argument("--limit", type=int, help="write only this many images")
    p.set_defaults(func=cmd_demo_data)
    p = sub.add_parser("db", help="database maintenance")
    p.add_argument("action", choices=["upgrade"])
    p.set_defaults(func=cli_store.cmd_db_upgrade)
    p = sub.add_parser("worker", help="run a training worker (one per GPU)")
    p.add_argument("--gpu", type=int, help="GPU index this worker owns (sets CUDA_VISIBLE_DEVICES)")
    p.add_argument("--queue", default=DEFAULT_QUEUE, help=f"queue to consume (default {DEFAULT_QUEUE})")
    p.set_defaults(func=cli_serve.cmd_worker)
    for name, helptext in (("up", "start everything: web, one worker, embedded broker, demo dataset"),
                           ("web", "start the web server alone")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=8000)
        p.add_argument("--insecure", action="store_true", help="allow a non-loopback host without an API token")
        p.add_argument("--data-root", help="datasets folder (default $FITBOARD_DATA_ROOT)")
        if name == "up":
            p.add_argument("--queue", default=DEFAULT_QUEUE)
        p.set_defaults(func=getattr(cli_serve, f"cmd_{name}"))
    p = sub.add_parser("submit", help="post a recipe to a fitboard server (REST API)")
    p.add_argument("recipe")
    p.add_argument("--url", help="server URL (default $FITBOARD_URL or http://127.0.0.1:8000)")
    p.add_argument("--follow", action="store_true", help="show the live epoch table until the run ends")
    p.set_defaults(func=cli_submit.cmd_submit)
    p = sub.add_parser("enqueue", help="validate a recipe, store it and queue it; prints the run id")
    p.add_argument("recipe")
    p.add_argument("--queue", default=DEFAULT_QUEUE)
    p.add_argument("--data-root", help="datasets folder (default $FITBOARD_DATA_ROOT)")
    p.set_defaults(func=cli_store.cmd_enqueue)
    p = sub.add_parser("runs", help="list runs")
    p.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cli_store.cmd_runs)
    p = sub.add_parser("show", help="show one run")
    p.add_argument("run", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cli_store.cmd_show)
    p = sub.add_parser("cancel", help="cancel a run")
    p.add_argument("run", type=int)
    p.set_defaults(func=cli_store.cmd_cancel)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the fitboard console script."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
