"""`fitboard submit`: post a recipe to a fitboard server and, with --follow, watch it train in the terminal."""
from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request

from fitboard.app.core.errors import RecipeError
from fitboard.app.core.events import ResultEvent, parse_event
from fitboard.app.core.recipes import read_recipe_file
from fitboard.app.core.status import RunStatus
from fitboard.worker.cli.common import EXIT_FAILED, EXIT_INVALID, EXIT_OK
from fitboard.worker.reporters import ConsoleReporter

DEFAULT_URL = "http://127.0.0.1:8000"
MAX_RECONNECTS = 10_000  # streams last minutes each: weeks of following


def api_request(url: str, data: dict | None = None, headers: dict | None = None):
    """An HTTP request with the API token when FITBOARD_API_TOKEN is set."""
    headers = {"Content-Type": "application/json", **(headers or {})}
    token = os.environ.get("FITBOARD_API_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps(data).encode() if data is not None else None
    return urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=60)


def post_or_refuse(base: str, path: str, build_body):
    """POST the body build_body() makes to /api/v1/<path>: the JSON answer, or the exit code after saying why it
    was refused (the recipe file, each field the API named, or an unreachable server)."""
    try:
        with api_request(f"{base}/api/v1/{path}", build_body()) as response:
            return json.load(response)
    except RecipeError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except urllib.error.HTTPError as exc:
        detail = json.loads(exc.read() or b"{}").get("detail")
        problems = detail if isinstance(detail, list) else [{"loc": "", "msg": str(detail)}]
        for p in problems:
            print(f"refused: {p['loc']}: {p['msg']}" if p.get("loc") else f"refused: {p['msg']}", file=sys.stderr)
        return EXIT_INVALID if exc.code == 422 else EXIT_FAILED
    except urllib.error.URLError as exc:
        print(f"cannot reach {base}: {exc.reason}", file=sys.stderr)
        return EXIT_FAILED


def sse_events(response):
    """Parse a server-sent event stream into (event, data, id) triples (id None when the event has none)."""
    event, data, event_id = "message", [], None
    for raw in response:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield event, json.loads("\n".join(data)), event_id
            event, data, event_id = "message", [], None
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line.startswith("id:"):
            event_id = line[3:].strip()


def follow(base: str, run_id: int) -> int:
    """Print the live epoch table and progress bar until the run ends; exit 0 only when it succeeded."""
    reporter, last_id, last_status = ConsoleReporter(), None, None
    # The server ends a stream after FITBOARD_STREAM_LIFETIME seconds: reconnect, resuming after the last row.
    for _ in range(MAX_RECONNECTS):
        headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last_id} if last_id else {})}
        try:
            response = api_request(f"{base}/api/v1/runs/{run_id}/events", headers=headers)
        except urllib.error.HTTPError as exc:
            if exc.code != 503:  # 503: the server's stream slots are full for now
                raise
            time.sleep(float(exc.headers.get("Retry-After") or 5))
            continue
        with response:
            for event, data, event_id in sse_events(response):
                last_id = event_id or last_id
                if event in ("epoch", "progress"):
                    reporter.emit(parse_event({**data, "event": event}))
                elif event == "status" and data.get("finished_at"):
                    result = data.get("result") or {}
                    if result.get("metrics"):  # the API adds the run's error beside the stored result
                        reporter.emit(ResultEvent.model_validate({k: v for k, v in result.items() if k != "error"}))
                    print(f"run {run_id}: {data['status']}" + (f" ({data['error']})" if data.get("error") else ""))
                    return EXIT_OK if data["status"] == RunStatus.succeeded else EXIT_FAILED
                elif event == "status" and data["status"] != last_status:
                    last_status = data["status"]
                    print(f"run {run_id}: {data['status']}", flush=True)
    return EXIT_FAILED


def cmd_submit(args) -> int:
    """Post a recipe; print the run id (and follow it with --follow)."""
    base = (args.url or os.environ.get("FITBOARD_URL") or DEFAULT_URL).rstrip("/")
    run = post_or_refuse(base, "runs", lambda: read_recipe_file(args.recipe))
    if isinstance(run, int):
        return run
    print(f"run {run['id']} queued: {base}/runs/{run['id']}", flush=True)
    if run.get("queued_note"):
        print(f"run {run['id']} stored; {run['queued_note']}", flush=True)
    return follow(base, run["id"]) if args.follow else EXIT_OK


def add_commands(sub) -> None:
    """submit."""
    p = sub.add_parser("submit", help="post a recipe to a fitboard server (REST API)")
    p.add_argument("recipe")
    p.add_argument("--url", help="server URL (default $FITBOARD_URL or http://127.0.0.1:8000)")
    p.add_argument("--follow", action="store_true", help="show the live epoch table until the run ends")
    p.set_defaults(func=cmd_submit)
