"""Following a run live from its server-sent event stream (the one the run page reads): epoch rows, batch
progress and the status, reconnecting with Last-Event-ID when a stream's lifetime ends."""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator

import httpx

from fitboard.errors import Unreachable
from fitboard.http import API, Http, check

FINISHED = ("succeeded", "failed", "cancelled", "pruned")
MAX_RETRY_AFTER = 30.0  # seconds: a busy server's Retry-After is honoured up to this


def sse(lines) -> Iterator[tuple[str, dict, str | None]]:
    """A server-sent event stream's lines as (event, data, id) triples; comments and data-less events are skipped."""
    kind, data, event_id = "message", [], None
    for line in lines:
        if line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line == "":
            if data:
                yield kind, json.loads("\n".join(data)), event_id
            kind, data, event_id = "message", [], None


def _busy(response: httpx.Response) -> float | None:
    """Seconds to wait when the server's stream slots are full (503), else None."""
    if response.status_code != 503:
        return None
    try:
        return min(float(response.headers.get("Retry-After") or 5), MAX_RETRY_AFTER)
    except ValueError:
        return 5.0


def events(http: Http, run_id: int, max_reconnects: int = 10_000) -> Iterator[tuple[str, dict]]:
    """(event, data) pairs until the run has finished; each epoch row is yielded once across reconnects. The server
    ends a stream after FITBOARD_STREAM_LIFETIME seconds: the next one resumes after the last row (Last-Event-ID)."""
    last_id = None
    path = f"{API}/runs/{run_id}/events"
    for _ in range(max_reconnects):
        headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last_id} if last_id else {})}
        # No read timeout: an epoch may take longer than any bound between two events.
        try:
            with http.client.stream("GET", path, headers=headers,
                                    timeout=httpx.Timeout(None, connect=5.0)) as response:
                if response.status_code >= 400:
                    response.read()
                    wait = _busy(response)
                    if wait is None:
                        check(response, "GET", path)
                    time.sleep(wait)
                    continue
                for kind, payload, event_id in sse(response.iter_lines()):
                    last_id = event_id or last_id
                    yield kind, payload
                    if kind == "status" and payload.get("status") in FINISHED:
                        return
        except httpx.TransportError as exc:
            raise Unreachable(0, f"{http.url} did not answer: {exc}", "GET", path) from exc
    raise RuntimeError(f"run {run_id}: event stream reconnected {max_reconnects} times without the run finishing")


def in_notebook() -> bool:
    """Whether we run inside a Jupyter kernel (a live display is possible)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"


def _cell(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else ("–" if v is None else str(v))


class Printer:
    """Plain lines for a terminal or a log: one per epoch row, one for the end."""

    def __init__(self, out=None):
        self.out = out or sys.stdout
        self.header = False

    def epoch(self, row: dict, rows: list[dict]) -> None:
        metrics = sorted(row.get("metrics") or {})
        if not self.header:
            self.out.write("  ".join(["stage", "epoch", "train_loss", "valid_loss", *metrics, "time"]) + "\n")
            self.header = True
        cells = [row["stage"] + 1, row["epoch"] + 1, row.get("train_loss"), row.get("valid_loss"),
                 *(row["metrics"][m] for m in metrics), f"{row.get('seconds') or 0:.1f}s"]
        self.out.write("  ".join(_cell(c) for c in cells) + "\n")
        self.out.flush()

    def progress(self, batch: dict, rows: list[dict]) -> None:
        """Terminals get no bar: lines stay readable in logs."""

    def status(self, run: dict, rows: list[dict]) -> None:
        line = f"run {run['id']}: {run['status']}"
        if run.get("best_accuracy") is not None:
            line += f", accuracy {run['best_accuracy']:.4f}"
        if run.get("error"):
            line += f": {run['error']}"
        self.out.write(line + "\n")
        self.out.flush()


class LiveCell:
    """One Jupyter output cell redrawn in place: the epoch table and a progress bar (IPython.display)."""

    def __init__(self, run_id: int):
        from IPython.display import HTML, display

        self.HTML, self.run_id = HTML, run_id
        self.batch, self.state = None, "running"
        self.handle = display(self.HTML(self._html([])), display_id=True)

    def _html(self, rows: list[dict]) -> str:
        metrics = sorted({m for r in rows for m in (r.get("metrics") or {})})
        head = "".join(f"<th>{h}</th>" for h in ["stage", "epoch", "train_loss", "valid_loss", *metrics, "time"])
        body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in [
            r["stage"] + 1, r["epoch"] + 1, r.get("train_loss"), r.get("valid_loss"),
            *((r.get("metrics") or {}).get(m) for m in metrics), f"{r.get('seconds') or 0:.1f}s"]) + "</tr>"
            for r in rows)
        bar = ""
        if self.batch and self.state == "running":
            b = self.batch
            bar = (f"<progress value='{b['batch']}' max='{b['total']}'></progress> stage {b['stage'] + 1}, epoch "
                   f"{b['epoch'] + 1}: batch {b['batch']}/{b['total']}, {b.get('eta', 0):.0f} s left")
        return (f"<div><b>run {self.run_id}</b>: {self.state}<br>{bar}"
                f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")

    def epoch(self, row: dict, rows: list[dict]) -> None:
        self.handle.update(self.HTML(self._html(rows)))

    def progress(self, batch: dict, rows: list[dict]) -> None:
        self.batch = batch
        self.handle.update(self.HTML(self._html(rows)))

    def status(self, run: dict, rows: list[dict]) -> None:
        self.state = run["status"] + (f" (accuracy {run['best_accuracy']:.4f})"
                                      if run.get("best_accuracy") is not None else "")
        self.handle.update(self.HTML(self._html(rows)))


def follow(http: Http, run_id: int, out=None) -> tuple[dict, list[dict]]:
    """Show the run live until it ends (a live cell in Jupyter, plain lines elsewhere); the last status event's
    run and the epoch rows seen."""
    view = LiveCell(run_id) if out is None and in_notebook() else Printer(out)
    rows, last = [], {"id": run_id, "status": "unknown"}
    for kind, data in events(http, run_id):
        if kind == "epoch":
            rows.append(data)
            view.epoch(data, rows)
        elif kind == "progress":
            view.progress(data, rows)
        elif kind == "status":
            last = data
            if data.get("status") in FINISHED:
                view.status(data, rows)
    return last, rows
