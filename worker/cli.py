"""The fitboard command line: train a recipe in the foreground, write the demo dataset."""
from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from app.schemas import RecipeError

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
DEFAULT_QUEUE = "fitboard"  # the same name as app.queue.DEFAULT_QUEUE, without importing celery for --help


def _settings(args):
    """Settings with command-line overrides applied."""
    from app.settings import Settings

    overrides = {"data_root": Path(args.data_root)} if getattr(args, "data_root", None) else {}
    return Settings(**overrides)


def cmd_train(args) -> int:
    """Run a recipe here and now, printing the epoch table (or JSON lines)."""
    from app.datasets import resolve_dataset
    from app.recipes import load_recipe
    from worker.reporting import ConsoleReporter, JsonReporter

    settings = _settings(args)
    reporter = JsonReporter() if args.json else ConsoleReporter()
    try:
        spec = load_recipe(args.recipe)
        dataset = resolve_dataset(spec.dataset, settings.data_root, seed=spec.seed)
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

    target = Path(args.dir) if args.dir else _settings(args).data_root / "digits"
    write_digits(target, limit=args.limit)
    print(f"wrote the digits demo dataset to {target}")
    return EXIT_OK


def _engine(settings):
    """The database engine, schema brought up to date first."""
    from app.db import default_database_url, make_engine, upgrade

    url = default_database_url(settings)
    upgrade(url)
    return make_engine(url)


def cmd_db_upgrade(args) -> int:
    """Bring the database schema up to date."""
    from app.db import default_database_url, upgrade

    url = default_database_url(_settings(args))
    upgrade(url)
    print(f"database at head: {url}")
    return EXIT_OK


def cmd_worker(args) -> int:
    """Run one solo-pool Celery worker (one per GPU)."""
    import os

    if args.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(args.gpu)  # before torch is imported anywhere
    from worker.tasks import run_worker

    run_worker(args.queue)
    return EXIT_OK


def cmd_enqueue(args) -> int:
    """Validate, store and queue a recipe; print the run id."""
    from app.db import session_scope
    from app.queue import enqueue_run, make_celery
    from app.recipes import read_recipe_file
    from app.submit import submit_run

    settings = _settings(args)
    engine = _engine(settings)
    try:
        with session_scope(engine) as session:
            run = submit_run(session, read_recipe_file(args.recipe), settings.data_root)
    except RecipeError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_INVALID
    enqueue_run(make_celery(settings), run.id, queue=args.queue)
    print(run.id)
    return EXIT_OK


def _fmt_float(v) -> str:
    return "" if v is None else f"{v:.4f}"


def cmd_runs(args) -> int:
    """A table of runs, newest first."""
    from app.db import session_scope
    from app.runs import list_runs

    with session_scope(_engine(_settings(args))) as session:
        runs, total = list_runs(session, status=args.status, limit=args.limit)
        print(f"{'id':>5}  {'status':<10} {'name':<32} {'dataset':<16} {'accuracy':>8} {'tta':>8}  created")
        for r in runs:
            print(f"{r.id:>5}  {r.status:<10} {r.name[:32]:<32} {r.dataset[:16]:<16} {_fmt_float(r.best_accuracy):>8} "
                  f"{_fmt_float(r.tta_accuracy):>8}  {r.created_at:%Y-%m-%d %H:%M:%S}")
    print(f"{len(runs)} of {total} runs")
    return EXIT_OK


def cmd_show(args) -> int:
    """One run: status, spec, epoch rows and result (or error)."""
    import json

    from app.db import session_scope
    from app.runs import RunNotFound, get_run, list_epochs

    with session_scope(_engine(_settings(args))) as session:
        try:
            run = get_run(session, args.run)
        except RunNotFound as exc:
            print(exc, file=sys.stderr)
            return EXIT_FAILED
        epochs = [{"stage": e.stage, "epoch": e.epoch, "train_loss": e.train_loss, "valid_loss": e.valid_loss,
                   "metrics": e.metrics, "seconds": e.seconds} for e in list_epochs(session, run.id)]
        data = {"id": run.id, "name": run.name, "status": run.status, "dataset": run.dataset, "worker": run.worker,
                "attempt": run.attempt, "spec": run.spec, "progress": run.progress, "epochs": epochs,
                "result": run.result, "error": run.error, "traceback": run.traceback}
    if args.json:
        print(json.dumps(data, default=str))
        return EXIT_OK
    print(f"run {data['id']} {data['name']!r}: {data['status']} (dataset {data['dataset']}, worker {data['worker']})")
    for e in epochs:
        m = e["metrics"] or {}
        print(f"  stage {e['stage']} epoch {e['epoch']}: train_loss {_fmt_float(e['train_loss'])} valid_loss "
              f"{_fmt_float(e['valid_loss'])} accuracy {_fmt_float(m.get('accuracy'))} ({e['seconds']:.1f}s)")
    if data["result"]:
        from worker.reporting import result_summary

        print(result_summary(data["result"]))
    if data["error"]:
        print(f"error: {data['error']}")
    return EXIT_OK


def cmd_cancel(args) -> int:
    """Cancel a queued run (it never starts) or ask a running one to stop."""
    from app.db import session_scope
    from app.runs import RunFinished, RunNotFound, request_cancel

    with session_scope(_engine(_settings(args))) as session:
        try:
            status = request_cancel(session, args.run)
        except (RunNotFound, RunFinished) as exc:
            print(exc, file=sys.stderr)
            return EXIT_FAILED
    print(f"run {args.run}: {'cancelled' if status == 'cancelled' else 'cancel requested'}")
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
    p.set_defaults(func=cmd_db_upgrade)
    p = sub.add_parser("worker", help="run a training worker (one per GPU)")
    p.add_argument("--gpu", type=int, help="GPU index this worker owns (sets CUDA_VISIBLE_DEVICES)")
    p.add_argument("--queue", default=DEFAULT_QUEUE, help=f"queue to consume (default {DEFAULT_QUEUE})")
    p.set_defaults(func=cmd_worker)
    p = sub.add_parser("enqueue", help="validate a recipe, store it and queue it; prints the run id")
    p.add_argument("recipe")
    p.add_argument("--queue", default=DEFAULT_QUEUE)
    p.add_argument("--data-root", help="datasets folder (default $FITBOARD_DATA_ROOT)")
    p.set_defaults(func=cmd_enqueue)
    p = sub.add_parser("runs", help="list runs")
    p.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_runs)
    p = sub.add_parser("show", help="show one run")
    p.add_argument("run", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)
    p = sub.add_parser("cancel", help="cancel a run")
    p.add_argument("run", type=int)
    p.set_defaults(func=cmd_cancel)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the fitboard console script."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
