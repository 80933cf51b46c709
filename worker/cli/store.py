"""Operator commands on this host's run store: `db upgrade`, `enqueue`, and the database side of `runs`,
`show`, `retry`, `cancel`, `edit` and `delete` (fitboard.worker.cli.manage decides between it and a server)."""
from __future__ import annotations

import os

from fitboard.app.core.errors import NotFound, RecipeError, RunActive, RunFinished, RunLive, RunNotFound
from fitboard.app.core.recipes import read_recipe_file
from fitboard.app.core.run_meta import parse_patch
from fitboard.app.services import people, runs
from fitboard.app.services.queue import DEFAULT_QUEUE, Publisher, make_celery
from fitboard.app.services.serializers import serialize_epoch, serialize_run
from fitboard.app.store.db import default_database_url, session_scope, upgrade
from fitboard.app.store.ownership import scope_session
from fitboard.worker.cli.common import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    add_data_root,
    add_project,
    say,
    settings_from,
    store_engine,
    warn,
)
from fitboard.worker.cli.manage import (
    cancelled_line,
    edit_changes,
    edited_line,
    print_runs,
    retried_line,
    show_run,
)


def cmd_db_upgrade(args) -> int:
    """Bring the database schema up to date."""
    url = default_database_url(settings_from(args))
    upgrade(url)
    say(f"database at head: {url}")
    return EXIT_OK


def in_project(session, args) -> None:
    """Scope the session to --project (else FITBOARD_PROJECT), as the server scopes a request: lists show its runs,
    new runs land in it; NotFound for a project that does not exist."""
    name = getattr(args, "project", None) or os.environ.get("FITBOARD_PROJECT")
    if name:
        scope_session(session, people.project(session, name).id, None)


def cmd_enqueue(args) -> int:
    """Validate, store and queue a recipe; print the run id."""
    settings = settings_from(args)
    publisher = Publisher(make_celery(settings), queue=args.queue)
    try:
        with session_scope(store_engine(settings)) as session:
            in_project(session, args)
            run, note = runs.submit(session, publisher, read_recipe_file(args.recipe), settings.data_root)
    except RecipeError as exc:
        warn(f"refused: {exc}")
        return EXIT_INVALID
    except NotFound as exc:
        warn(str(exc))
        return EXIT_FAILED
    say(str(run.id))
    if note:
        warn(f"run {run.id} stored; {note}")
    return EXIT_OK


def _on_store(args, work, output, refusals: tuple = (), invalid: tuple = ()) -> int:
    """work(session, settings) in one transaction on this host's database, then output(what it returned); a refusal
    (the run is missing, or in the wrong state) is said and exits 1, an invalid change (invalid) exits 2."""
    settings = settings_from(args)
    with session_scope(store_engine(settings)) as session:
        try:
            data = work(session, settings)
        except refusals as exc:
            warn(str(exc))
            return EXIT_FAILED
        except invalid as exc:
            warn(f"refused: {exc}")
            return EXIT_INVALID
    output(data)
    return EXIT_OK


def local_retry(args) -> int:
    """Queue a failed or cancelled run again in this host's database, from its last checkpoint or from scratch."""
    def work(session, settings) -> tuple[dict, str | None]:
        publisher = Publisher(make_celery(settings), queue=args.queue or DEFAULT_QUEUE)
        run, note = runs.retry(session, publisher, args.run, from_checkpoint=not args.scratch)
        return {"id": run.id, "resume_from": run.resume_from}, note

    return _on_store(args, work, lambda done: say(retried_line(done[0], args.scratch, done[1])),
                     (RunNotFound, RunActive))


def local_runs(args) -> int:
    """A table of the runs in this host's database, newest first."""
    def work(session, _settings) -> tuple[list[dict], int | None]:
        in_project(session, args)
        found = runs.page(session, status=args.status, limit=args.limit, tag=args.tag,
                          archived=runs.ARCHIVED[args.archived], summary=True)
        return [serialize_run(r, full=False) for r in found.items], found.total

    return _on_store(args, work, lambda page: print_runs(*page, args.wide), (NotFound,))


def local_edit(args) -> int:
    """Rename a run in this host's database, set its notes, add or remove tags, archive or unarchive it."""
    def work(session, _settings) -> dict:
        run = runs.get(session, args.run)
        return serialize_run(runs.edit(session, args.run, parse_patch(edit_changes(args, run.tag_list))), full=False)

    return _on_store(args, work, lambda data: say(edited_line(data)), (RunNotFound,), (RecipeError,))


def local_delete(args) -> int:
    """Delete a finished run with its rows and files from this host's database and artifact store."""
    return _on_store(args, lambda session, settings: runs.delete(session, settings, args.run),
                     lambda _: say(f"run {args.run} deleted"), (RunNotFound, RunLive))


def local_show(args) -> int:
    """One run from this host's database: status, epoch rows and result (or error)."""
    def work(session, _settings) -> dict:
        run = runs.get(session, args.run)
        return {**serialize_run(run), "epochs": [serialize_epoch(e) for e in runs.epochs(session, run.id)]}

    return _on_store(args, work, lambda data: show_run(args, data), (RunNotFound,))


def local_cancel(args) -> int:
    """Cancel a queued run in this host's database (it never starts) or ask a running one to stop."""
    return _on_store(args, lambda session, settings: runs.cancel(session, args.run,
                                                                  orphaned_after=settings.worker_lost_after),
                     lambda status: say(cancelled_line(args.run, status)), (RunNotFound, RunFinished))


def add_commands(sub) -> None:
    """db and enqueue (runs, show, retry, cancel, edit and delete: fitboard.worker.cli.manage)."""
    p = sub.add_parser("db", help="database maintenance")
    p.add_argument("action", choices=["upgrade"])
    p.set_defaults(func=cmd_db_upgrade)
    p = sub.add_parser("enqueue", help="validate a recipe, store it and queue it; prints the run id")
    p.add_argument("recipe")
    p.add_argument("--queue", default=DEFAULT_QUEUE)
    add_data_root(p)
    add_project(p)
    p.set_defaults(func=cmd_enqueue)
