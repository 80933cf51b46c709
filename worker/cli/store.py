"""Operator commands on this host's run store: `db upgrade`, `enqueue`, and the database side of `runs`,
`show`, `retry`, `cancel`, `edit` and `delete` (fitboard.worker.cli.manage decides between it and a server)."""
from __future__ import annotations

import json

from fitboard.app.core.errors import RecipeError, RunActive, RunFinished, RunLive, RunNotFound
from fitboard.app.core.recipes import read_recipe_file
from fitboard.app.core.run_meta import parse_patch
from fitboard.app.core.status import RunStatus
from fitboard.app.services import runs
from fitboard.app.services.queue import DEFAULT_QUEUE, Publisher, make_celery
from fitboard.app.services.serializers import serialize_epoch, serialize_run
from fitboard.app.store.db import default_database_url, session_scope, upgrade
from fitboard.worker.cli.common import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    add_data_root,
    say,
    settings_from,
    store_engine,
    warn,
)
from fitboard.worker.cli.manage import edit_changes, edited_line, print_run, print_runs, retried_line


def cmd_db_upgrade(args) -> int:
    """Bring the database schema up to date."""
    url = default_database_url(settings_from(args))
    upgrade(url)
    say(f"database at head: {url}")
    return EXIT_OK


def cmd_enqueue(args) -> int:
    """Validate, store and queue a recipe; print the run id."""
    settings = settings_from(args)
    publisher = Publisher(make_celery(settings), queue=args.queue)
    try:
        with session_scope(store_engine(settings)) as session:
            run, note = runs.submit(session, publisher, read_recipe_file(args.recipe), settings.data_root)
    except RecipeError as exc:
        warn(f"refused: {exc}")
        return EXIT_INVALID
    say(str(run.id))
    if note:
        warn(f"run {run.id} stored; {note}")
    return EXIT_OK


def local_retry(args) -> int:
    """Queue a failed or cancelled run again in this host's database, from its last checkpoint or from scratch."""
    settings = settings_from(args)
    publisher = Publisher(make_celery(settings), queue=args.queue or DEFAULT_QUEUE)
    with session_scope(store_engine(settings)) as session:
        try:
            run, note = runs.retry(session, publisher, args.run, from_checkpoint=not args.scratch)
        except (RunNotFound, RunActive) as exc:
            warn(str(exc))
            return EXIT_FAILED
        say(retried_line({"id": run.id, "resume_from": run.resume_from}, args.scratch, note))
    return EXIT_OK


def local_runs(args) -> int:
    """A table of the runs in this host's database, newest first."""
    with session_scope(store_engine(settings_from(args))) as session:
        found = runs.page(session, status=args.status, limit=args.limit, tag=args.tag,
                          archived=runs.ARCHIVED[args.archived])
        print_runs([serialize_run(r, full=False) for r in found.items], found.total, args.wide)
    return EXIT_OK


def local_edit(args) -> int:
    """Rename a run in this host's database, set its notes, add or remove tags, archive or unarchive it."""
    with session_scope(store_engine(settings_from(args))) as session:
        try:
            run = runs.get(session, args.run)
            run = runs.edit(session, args.run, parse_patch(edit_changes(args, run.tag_list)))
        except (RunNotFound, RecipeError) as exc:
            warn(f"refused: {exc}" if isinstance(exc, RecipeError) else str(exc))
            return EXIT_INVALID if isinstance(exc, RecipeError) else EXIT_FAILED
        say(edited_line(serialize_run(run, full=False)))
    return EXIT_OK


def local_delete(args) -> int:
    """Delete a finished run with its rows and files from this host's database and artifact store."""
    settings = settings_from(args)
    with session_scope(store_engine(settings)) as session:
        try:
            runs.delete(session, settings, args.run)
        except (RunNotFound, RunLive) as exc:
            warn(str(exc))
            return EXIT_FAILED
    say(f"run {args.run} deleted")
    return EXIT_OK


def local_show(args) -> int:
    """One run from this host's database: status, epoch rows and result (or error)."""
    with session_scope(store_engine(settings_from(args))) as session:
        try:
            run = runs.get(session, args.run)
        except RunNotFound as exc:
            warn(str(exc))
            return EXIT_FAILED
        data = {**serialize_run(run), "epochs": [serialize_epoch(e) for e in runs.epochs(session, run.id)]}
    if args.json:
        say(json.dumps(data, default=str))
    else:
        print_run(data)
    return EXIT_OK


def local_cancel(args) -> int:
    """Cancel a queued run in this host's database (it never starts) or ask a running one to stop."""
    settings = settings_from(args)
    with session_scope(store_engine(settings)) as session:
        try:
            status = runs.cancel(session, args.run, orphaned_after=settings.worker_lost_after)
        except (RunNotFound, RunFinished) as exc:
            warn(str(exc))
            return EXIT_FAILED
    say(f"run {args.run}: {'cancelled' if status == RunStatus.cancelled else 'cancel requested'}")
    return EXIT_OK


def add_commands(sub) -> None:
    """db and enqueue (runs, show, retry, cancel, edit and delete: fitboard.worker.cli.manage)."""
    p = sub.add_parser("db", help="database maintenance")
    p.add_argument("action", choices=["upgrade"])
    p.set_defaults(func=cmd_db_upgrade)
    p = sub.add_parser("enqueue", help="validate a recipe, store it and queue it; prints the run id")
    p.add_argument("recipe")
    p.add_argument("--queue", default=DEFAULT_QUEUE)
    add_data_root(p)
    p.set_defaults(func=cmd_enqueue)
