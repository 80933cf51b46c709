"""`fitboard runs`, `show`, `retry`, `cancel`, `edit` and `delete`: over HTTP (fitboard.Client) when a server is
named (--url or FITBOARD_URL) or this install has no database of its own; otherwise on this host's database
(fitboard.worker.cli.store). Either way the same lines are printed, from the API's JSON shape."""
from __future__ import annotations

import json
from datetime import datetime

from fitboard.app.core.numbering import where
from fitboard.app.core.status import STATUSES
from fitboard.errors import FitboardError
from fitboard.worker.cli.common import EXIT_OK, add_project, add_url, asks_server, client_for, refused, say
from fitboard.worker.console import result_text

ARCHIVED = ("hide", "only", "show")


def _f4(v) -> str:
    return "" if v is None else f"{v:.4f}"


def _when(iso: str | None) -> str:
    """An API time (ISO 8601) as the table shows it."""
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S") if iso else ""


def print_runs(items: list[dict], total: int | None, wide: bool) -> None:
    """A table of runs (the API's JSON), newest first; names cut to fit a line unless wide."""
    width = max([len(r["name"]) for r in items] + [4]) if wide else 32
    say(f"{'id':>5}  {'status':<10} {'name':<{width}} {'dataset':<16} {'accuracy':>8} {'tta':>8}  created"
        + ("  tags" if wide else ""))
    for r in items:
        name = r["name"] if wide or len(r["name"]) <= width else r["name"][:width - 1] + "…"
        say(f"{r['id']:>5}  {r['status']:<10} {name:<{width}} {r['dataset'][:16]:<16} {_f4(r['best_accuracy']):>8} "
            f"{_f4(r['tta_accuracy']):>8}  {_when(r['created_at'])}"
            + (f"  {','.join(r.get('tags') or [])}" if wide else ""))
    say(f"{len(items)} of {total if total is not None else 'more than 10,000'} runs")  # None: not counted exactly


def print_run(data: dict) -> None:
    """One run in words (the API's JSON with its epoch rows under "epochs"): status, each epoch, how it ended."""
    held_by = f", worker {data['worker']}" if data.get("worker") else ""  # none while queued
    say(f"run {data['id']} {data['name']!r}: {data['status']} (dataset {data['dataset']}{held_by})")
    for e in data["epochs"]:
        m = e.get("metrics") or {}
        say(f"  {where(e['stage'], e['epoch'])}: train_loss {_f4(e['train_loss'])} valid_loss "
            f"{_f4(e['valid_loss'])} accuracy {_f4(m.get('accuracy'))} ({e['seconds'] or 0:.1f}s)")
    result = data.get("result") or {}
    if result.get("metrics"):
        say(result_text(result))
    if result.get("pruned"):  # a trial its search's pruner stopped
        p = result["pruned"]
        say(f"pruned by its search after {p['step']} epochs ({p.get('metric')} {_f4(p.get('value'))})")
    if data["error"]:
        say(f"error: {data['error']}")


def retried_line(data: dict, scratch: bool, note: str | None) -> str:
    """'run 7 queued again from stage 2 epoch 3; <note>'."""
    position = data.get("resume_from")
    start = "from scratch" if scratch else (
        f"from stage {position['stage'] + 1} epoch {position['epoch'] + 1}" if position else "from the start")
    return f"run {data['id']} queued again {start}" + (f"; {note}" if note else "")


def edit_changes(args, tags: list[str]) -> dict:
    """The fields `fitboard edit` changes, given the run's tags now (--tag adds, --untag removes)."""
    changes = {k: v for k, v in (("name", args.name), ("notes", args.notes), ("archived", args.archived))
               if v is not None}
    if args.tag or args.untag:
        changes["tags"] = [t for t in tags + (args.tag or []) if t not in (args.untag or [])]
    return changes


def edited_line(data: dict) -> str:
    """"run 7 'name': tags a,b (archived)"."""
    return f"run {data['id']} {data['name']!r}: tags {','.join(data.get('tags') or []) or '-'}" + (
        " (archived)" if data.get("archived") else "")


def show_run(args, data: dict) -> None:
    """What `fitboard show` prints: the run's JSON with --json, else the run in words."""
    if args.json:
        say(json.dumps(data, default=str))
    else:
        print_run(data)


def cancelled_line(run: int, status: str) -> str:
    """'run 7: cancelled' (it was queued) or 'run 7: cancel requested' (it is running and asked to stop)."""
    return f"run {run}: {'cancelled' if status == 'cancelled' else 'cancel requested'}"


def _here_or_served(args, local: str, remote, output) -> int:
    """One command on this host's database (fitboard.worker.cli.store's function named `local`, which prints the same
    lines) unless a server is asked; over HTTP, remote(client) fetches what output(...) prints."""
    if not asks_server(args):
        from fitboard.worker.cli import store  # the server's packages load only here

        return getattr(store, local)(args)
    with client_for(args) as client:
        try:
            data = remote(client)
        except FitboardError as exc:
            return refused(exc, client.url)
    output(data)
    return EXIT_OK


def cmd_runs(args) -> int:
    """A table of runs, newest first."""
    return _here_or_served(
        args, "local_runs",
        lambda client: client.runs(status=args.status, tag=args.tag, archived=args.archived, limit=args.limit),
        lambda items: print_runs(items, items.total, args.wide))


def cmd_show(args) -> int:
    """One run: status, epoch rows and result (or error); JSON with --json."""
    return _here_or_served(
        args, "local_show",
        lambda client: {**client.run(args.run).data, "epochs": client.http.json("GET", f"runs/{args.run}/epochs")},
        lambda data: show_run(args, data))


def cmd_retry(args) -> int:
    """Queue a failed or cancelled run again, from its last checkpoint or from scratch."""
    return _here_or_served(
        args, "local_retry", lambda client: client.run(args.run).retry(from_checkpoint=not args.scratch).data,
        lambda data: say(retried_line(data, args.scratch, data.get("queued_note"))))


def cmd_cancel(args) -> int:
    """Cancel a queued run (it never starts) or ask a running one to stop."""
    return _here_or_served(args, "local_cancel", lambda client: client.run(args.run).cancel().status,
                           lambda status: say(cancelled_line(args.run, status)))


def cmd_edit(args) -> int:
    """Rename a run, set its notes, add or remove tags, archive or unarchive it."""
    def remote(client) -> dict:
        run = client.run(args.run)
        return run.edit(**edit_changes(args, run.data.get("tags") or [])).data

    return _here_or_served(args, "local_edit", remote, lambda data: say(edited_line(data)))


def cmd_delete(args) -> int:
    """Delete a finished run with its rows and files."""
    return _here_or_served(args, "local_delete", lambda client: client.run(args.run).delete(),
                           lambda _: say(f"run {args.run} deleted"))


def add_commands(sub) -> None:
    """runs, show, retry, cancel, edit and delete."""
    p = sub.add_parser("runs", help="list runs")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--tag", help="only runs with this tag")
    p.add_argument("--archived", choices=ARCHIVED, default="hide",
                   help="archived runs: hide (default), show with the others, or only")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--wide", action="store_true", help="full names (and tags), however long")
    add_url(p)
    add_project(p)
    p.set_defaults(func=cmd_runs)
    _add_run_command(sub, "show", cmd_show, "show one run", ("--json", {"action": "store_true"}))
    _add_run_command(
        sub, "retry", cmd_retry, "queue a failed or cancelled run again (from its last checkpoint)",
        ("--scratch", {"action": "store_true", "help": "start over from epoch 0 (its epoch rows are cleared)"}),
        ("--queue", {"help": "the queue to publish to (this host's database only; a server uses its own)"}))
    _add_run_command(sub, "cancel", cmd_cancel, "cancel a run")
    _add_run_command(
        sub, "edit", cmd_edit, "rename a run, set notes, add or remove tags, archive it",
        ("--name", {}), ("--notes", {"help": "plain text; \"\" clears"}),
        ("--tag", {"action": "append", "help": "add a tag (repeatable)"}),
        ("--untag", {"action": "append", "help": "remove a tag (repeatable)"}),
        ("--archive", {"dest": "archived", "action": "store_const", "const": True}),
        ("--unarchive", {"dest": "archived", "action": "store_const", "const": False}))
    _add_run_command(sub, "delete", cmd_delete, "delete a finished run with its epochs and files")


def _add_run_command(sub, name: str, func, help_text: str, *options: tuple[str, dict]) -> None:
    """A command on one run: its id, then each (flag, add_argument's keywords) of options, then --url."""
    p = sub.add_parser(name, help=help_text)
    p.add_argument("run", type=int)
    for flag, settings in options:
        p.add_argument(flag, **settings)
    add_url(p)
    p.set_defaults(func=func)
