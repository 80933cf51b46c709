"""Operator commands on the run store: `db upgrade`, `enqueue`, `runs`, `show`, `cancel`, `retry`, `edit`, `delete`."""
from __future__ import annotations

import json
import sys

from fitboard.app.core.errors import RecipeError, RunActive, RunFinished, RunLive, RunNotFound
from fitboard.app.core.events import ResultEvent
from fitboard.app.core.numbering import where
from fitboard.app.core.recipes import read_recipe_file
from fitboard.app.core.run_meta import parse_patch
from fitboard.app.core.status import STATUSES, RunStatus
from fitboard.app.services import runs
from fitboard.app.services.queue import DEFAULT_QUEUE, Publisher, make_celery
from fitboard.app.services.serializers import serialize_epoch, serialize_run
from fitboard.app.store.db import default_database_url, session_scope, upgrade
from fitboard.worker.cli.common import EXIT_FAILED, EXIT_INVALID, EXIT_OK, add_data_root, settings_from, store_engine
from fitboard.worker.reporters import result_summary


def cmd_db_upgrade(args) -> int:
    """Bring the database schema up to date."""
    url = default_database_url(settings_from(args))
    upgrade(url)
    print(f"database at head: {url}")
    return EXIT_OK


def cmd_enqueue(args) -> int:
    """Validate, store and queue a recipe; print the run id."""
    settings = settings_from(args)
    publisher = Publisher(make_celery(settings), queue=args.queue)
    try:
        with session_scope(store_engine(settings)) as session:
            run, note = runs.submit(session, publisher, read_recipe_file(args.recipe), settings.data_root)
    except RecipeError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(run.id, flush=True)
    if note:
        print(f"run {run.id} stored; {note}", file=sys.stderr)
    return EXIT_OK


def cmd_retry(args) -> int:
    """Queue a failed or cancelled run again, from its last checkpoint or from scratch."""
    settings = settings_from(args)
    publisher = Publisher(make_celery(settings), queue=args.queue)
    with session_scope(store_engine(settings)) as session:
        try:
            run, note = runs.retry(session, publisher, args.run, from_checkpoint=not args.scratch)
        except (RunNotFound, RunActive) as exc:
            print(exc, file=sys.stderr)
            return EXIT_FAILED
    position = run.resume_from
    where = "from scratch" if args.scratch else (
        f"from stage {position['stage'] + 1} epoch {position['epoch'] + 1}" if position else "from the start")
    print(f"run {run.id} queued again {where}" + (f"; {note}" if note else ""))
    return EXIT_OK


def _fmt_float(v) -> str:
    return "" if v is None else f"{v:.4f}"


def cmd_runs(args) -> int:
    """A table of runs, newest first; names cut to fit a line unless --wide."""
    with session_scope(store_engine(settings_from(args))) as session:
        found = runs.page(session, status=args.status, limit=args.limit, tag=args.tag,
                          archived=runs.ARCHIVED[args.archived])
        items, total = found.items, found.total
        width = max([len(r.name) for r in items] + [4]) if args.wide else 32
        print(f"{'id':>5}  {'status':<10} {'name':<{width}} {'dataset':<16} {'accuracy':>8} {'tta':>8}  created"
              + ("  tags" if args.wide else ""))
        for r in items:
            name = r.name if args.wide or len(r.name) <= width else r.name[:width - 1] + "…"
            print(f"{r.id:>5}  {r.status:<10} {name:<{width}} {r.dataset[:16]:<16} {_fmt_float(r.best_accuracy):>8} "
                  f"{_fmt_float(r.tta_accuracy):>8}  {r.created_at:%Y-%m-%d %H:%M:%S}"
                  + (f"  {','.join(r.tag_list)}" if args.wide else ""))
    print(f"{len(items)} of {total if total is not None else 'more than 10,000'} runs")
    return EXIT_OK


def cmd_edit(args) -> int:
    """Rename a run, set its notes, add or remove tags, archive or unarchive it."""
    with session_scope(store_engine(settings_from(args))) as session:
        try:
            run = runs.get(session, args.run)
            changes = {k: v for k, v in (("name", args.name), ("notes", args.notes),
                                         ("archived", args.archived)) if v is not None}
            if args.tag or args.untag:
                tags = [t for t in run.tag_list + (args.tag or []) if t not in (args.untag or [])]
                changes["tags"] = tags
            run = runs.edit(session, args.run, parse_patch(changes))
        except (RunNotFound, RecipeError) as exc:
            print(f"refused: {exc}" if isinstance(exc, RecipeError) else exc, file=sys.stderr)
            return EXIT_INVALID if isinstance(exc, RecipeError) else EXIT_FAILED
        print(f"run {run.id} {run.name!r}: tags {','.join(run.tag_list) or '-'}"
              f"{' (archived)' if run.archived else ''}")
    return EXIT_OK


def cmd_delete(args) -> int:
    """Delete a finished run with its rows and files."""
    settings = settings_from(args)
    with session_scope(store_engine(settings)) as session:
        try:
            runs.delete(session, settings, args.run)
        except (RunNotFound, RunLive) as exc:
            print(exc, file=sys.stderr)
            return EXIT_FAILED
    print(f"run {args.run} deleted")
    return EXIT_OK


def _print_run(data: dict, result: dict | None) -> None:
    """One run in words: status, each epoch row, how it ended."""
    print(f"run {data['id']} {data['name']!r}: {data['status']} (dataset {data['dataset']}, worker {data['worker']})")
    for e in data["epochs"]:
        m = e["metrics"]
        print(f"  {where(e['stage'], e['epoch'])}: train_loss {_fmt_float(e['train_loss'])} valid_loss "
              f"{_fmt_float(e['valid_loss'])} accuracy {_fmt_float(m.get('accuracy'))} ({e['seconds']:.1f}s)")
    if result and result.get("metrics"):
        print(result_summary(ResultEvent.model_validate(result)))
    if result and result.get("pruned"):  # a trial its search's pruner stopped
        p = result["pruned"]
        print(f"pruned by its search after {p['step']} epochs ({p.get('metric')} {_fmt_float(p.get('value'))})")
    if data["error"]:
        print(f"error: {data['error']}")


def cmd_show(args) -> int:
    """One run: status, spec, epoch rows and result (or error)."""
    with session_scope(store_engine(settings_from(args))) as session:
        try:
            run = runs.get(session, args.run)
        except RunNotFound as exc:
            print(exc, file=sys.stderr)
            return EXIT_FAILED
        data = {**serialize_run(run), "epochs": [serialize_epoch(e) for e in runs.epochs(session, run.id)]}
        result = run.result
    if args.json:
        print(json.dumps(data, default=str))
    else:
        _print_run(data, result)
    return EXIT_OK


def cmd_cancel(args) -> int:
    """Cancel a queued run (it never starts) or ask a running one to stop."""
    settings = settings_from(args)
    with session_scope(store_engine(settings)) as session:
        try:
            status = runs.cancel(session, args.run, orphaned_after=settings.worker_lost_after)
        except (RunNotFound, RunFinished) as exc:
            print(exc, file=sys.stderr)
            return EXIT_FAILED
    print(f"run {args.run}: {'cancelled' if status == RunStatus.cancelled else 'cancel requested'}")
    return EXIT_OK


def add_commands(sub) -> None:
    """db, enqueue, retry, runs, edit, delete, show and cancel."""
    p = sub.add_parser("db", help="database maintenance")
    p.add_argument("action", choices=["upgrade"])
    p.set_defaults(func=cmd_db_upgrade)
    p = sub.add_parser("enqueue", help="validate a recipe, store it and queue it; prints the run id")
    p.add_argument("recipe")
    p.add_argument("--queue", default=DEFAULT_QUEUE)
    add_data_root(p)
    p.set_defaults(func=cmd_enqueue)
    p = sub.add_parser("retry", help="queue a failed or cancelled run again (from its last checkpoint)")
    p.add_argument("run", type=int)
    p.add_argument("--scratch", action="store_true", help="start over from epoch 0 (its epoch rows are cleared)")
    p.add_argument("--queue", default=DEFAULT_QUEUE)
    p.set_defaults(func=cmd_retry)
    p = sub.add_parser("runs", help="list runs")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--tag", help="only runs with this tag")
    p.add_argument("--archived", choices=sorted(runs.ARCHIVED), default="hide",
                   help="archived runs: hide (default), show with the others, or only")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--wide", action="store_true", help="full names (and tags), however long")
    p.set_defaults(func=cmd_runs)
    p = sub.add_parser("edit", help="rename a run, set notes, add or remove tags, archive it")
    p.add_argument("run", type=int)
    p.add_argument("--name")
    p.add_argument("--notes", help="plain text; \"\" clears")
    p.add_argument("--tag", action="append", help="add a tag (repeatable)")
    p.add_argument("--untag", action="append", help="remove a tag (repeatable)")
    p.add_argument("--archive", dest="archived", action="store_const", const=True)
    p.add_argument("--unarchive", dest="archived", action="store_const", const=False)
    p.set_defaults(func=cmd_edit)
    p = sub.add_parser("delete", help="delete a finished run with its epochs and files")
    p.add_argument("run", type=int)
    p.set_defaults(func=cmd_delete)
    p = sub.add_parser("show", help="show one run")
    p.add_argument("run", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)
    p = sub.add_parser("cancel", help="cancel a run")
    p.add_argument("run", type=int)
    p.set_defaults(func=cmd_cancel)
