"""`fitboard submit` posts a recipe to a fitboard server; `fitboard follow RUN` (or `submit --follow`) shows a run
training, live, from its event stream. Both go through fitboard.Client: they work from a light install."""
from __future__ import annotations

from fitboard.errors import FitboardError, RecipeFileError
from fitboard.follow import FINISHED, events
from fitboard.recipe_files import read_recipe_file
from fitboard.worker.cli.common import EXIT_FAILED, EXIT_OK, add_project, add_url, client_for, refused, say
from fitboard.worker.console import Console


def _status_line(run_id: int, data: dict) -> str:
    """'run 7: failed (why)'."""
    return f"run {run_id}: {data['status']}" + (f" ({data['error']})" if data.get("error") else "")


def follow(client, run_id: int) -> int:
    """Print the live epoch table and progress bar until the run ends; exit 0 only when it succeeded."""
    console, last_status = Console(), None
    for event, data in events(client.http, run_id):
        if event == "epoch":
            console.epoch(data)
        elif event == "progress":
            console.progress(data)
        elif event == "status" and data.get("status") in FINISHED:
            console.result(data.get("result") or {})
            say(_status_line(run_id, data))
            return EXIT_OK if data["status"] == "succeeded" else EXIT_FAILED
        elif event == "status" and data.get("status") != last_status:
            last_status = data["status"]
            say(_status_line(run_id, {"status": last_status}))
    return EXIT_FAILED


def cmd_submit(args) -> int:
    """Post a recipe; print the run id (and follow it with --follow)."""
    with client_for(args) as client:
        try:
            run = client.submit(read_recipe_file(args.recipe), priority=args.priority)
        except (RecipeFileError, FitboardError) as exc:
            return refused(exc, client.url)
        say(f"run {run.id} queued: {client.url}/runs/{run.id}")
        if run.data.get("queue_position"):
            say(f"run {run.id}: number {run['queue_position']} in line (priority {run['priority']})")
        if run.data.get("queued_note"):
            say(f"run {run.id} stored; {run['queued_note']}")
        return follow_or_refuse(client, run.id) if args.follow else EXIT_OK


def follow_or_refuse(client, run_id: int) -> int:
    """Follow a run, saying why when the server refuses or goes away."""
    try:
        return follow(client, run_id)
    except FitboardError as exc:
        return refused(exc, client.url)


def cmd_follow(args) -> int:
    """Show a run's live epoch table until it ends."""
    with client_for(args) as client:
        return follow_or_refuse(client, args.run)


def add_commands(sub) -> None:
    """submit and follow."""
    p = sub.add_parser("submit", help="post a recipe to a fitboard server (REST API)")
    p.add_argument("recipe")
    add_url(p)
    add_project(p)
    p.add_argument("--follow", action="store_true", help="show the live epoch table until the run ends")
    p.add_argument("--priority", choices=("high", "normal", "low"),
                   help="its place in the fair queue: high ones start first (default normal)")
    p.set_defaults(func=cmd_submit)
    p = sub.add_parser("follow", help="show a run's live epoch table on a fitboard server until it ends")
    p.add_argument("run", type=int)
    add_url(p)
    p.set_defaults(func=cmd_follow)
