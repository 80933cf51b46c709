"""Following a run live from its server-sent event stream (the one the run page reads): epoch rows, batch
progress and the status, reconnecting with Last-Event-ID when a stream's lifetime ends."""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import httpx

from fitboard.http import API, Http, check

FINISHED = ("succeeded", "failed", "cancelled", "pruned")


def events(http: Http, run_id: int, max_reconnects: int = 10_000) -> Iterator[tuple[str, dict]]:
    """(event, data) pairs until the run has finished; each epoch row is yielded once across reconnects."""
    last_id = None
    for _ in range(max_reconnects):
        headers = {"Last-Event-ID": last_id} if last_id else {}
        path = f"{API}/runs/{run_id}/events"
        # No read timeout: an epoch may take longer than any bound between two events.
        with http.client.stream("GET", path, headers=headers, timeout=httpx.Timeout(None, connect=5.0)) as response:
            if response.status_code >= 400:
                response.read()
                check(response, "GET", path)
            kind, data, event_id = None, [], None
            for line in response.iter_lines():
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line.startswith("id:"):
                    event_id = line[3:].strip()
                elif line == "":
                    if kind and data:
                        payload = json.loads("\n".join(data))
                        if event_id:
                            last_id = event_id
                        yield kind, payload
                        if kind == "status" and payload.get("status") in FINISHED:
                            return
                    kind, data, event_id = None, [], None
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
