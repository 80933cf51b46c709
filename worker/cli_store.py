"""Operator commands on the run store: migrate, enqueue, list, show, cancel."""
from __future__ import annotations

import sys

from app.schemas import RecipeError
from worker.cli_common import EXIT_FAILED, EXIT_INVALID, EXIT_OK, settings_from, store_engine


def cmd_db_upgrade(args) -> int:
    """Bring the database schema up to date."""
    from app.db import default_database_url, upgrade

    url = default_database_url(settings_from(args))
    upgrade(url)
    print(f"database at head: {url}")
    return EXIT_OK


def cmd_enqueue(args) -> int:
    """Validate, store and queue a recipe; print the run id."""
    from app.db import session_scope
    from app.queue import enqueue_run, make_celery
    from app.recipes import read_recipe_file
    from app.submit import submit_run

    settings = settings_from(args)
    engine = store_engine(settings)
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

    with session_scope(store_engine(settings_from(args))) as session:
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
    from app.views import epoch_json, run_json

    with session_scope(store_engine(settings_from(args))) as session:
        try:
            run = get_run(session, args.run)
        except RunNotFound as exc:
            print(exc, file=sys.stderr)
            return EXIT_FAILED
        data = {**run_json(run), "epochs": [epoch_json(e) for e in list_epochs(session, run.id)]}
        result = run.result
    if args.json:
        print(json.dumps(data, default=str))
        return EXIT_OK
    print(f"run {data['id']} {data['name']!r}: {data['status']} (dataset {data['dataset']}, worker {data['worker']})")
    for e in data["epochs"]:
        m = e["metrics"]
        print(f"  stage {e['stage']} epoch {e['epoch']}: train_loss {_fmt_float(e['train_loss'])} valid_loss "
              f"{_fmt_float(e['valid_loss'])} accuracy {_fmt_float(m.get('accuracy'))} ({e['seconds']:.1f}s)")
    if result:
        from worker.reporting import result_summary

        print(result_summary(result))
    if data["error"]:
        print(f"error: {data['error']}")
    return EXIT_OK


def cmd_cancel(args) -> int:
    """Cancel a queued run (it never starts) or ask a running one to stop."""
    from app.db import session_scope
    from app.runs import RunFinished, RunNotFound, request_cancel

    with session_scope(store_engine(settings_from(args))) as session:
        try:
            status = request_cancel(session, args.run)
        except (RunNotFound, RunFinished) as exc:
            print(exc, file=sys.stderr)
            return EXIT_FAILED
    print(f"run {args.run}: {'cancelled' if status == 'cancelled' else 'cancel requested'}")
    return EXIT_OK
