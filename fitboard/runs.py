"""A run as the client sees it: read it, wait for it, follow it live, cancel, retry, predict, download its model."""
from __future__ import annotations

import mimetypes
import time
from pathlib import Path

import httpx

from fitboard import follow as live
from fitboard import tables
from fitboard.http import Http, check

FINISHED = live.FINISHED
PREDICT_TIMEOUT = 150.0  # seconds: above the longest a server holds a predict request (120 s)
PREDICT_POLL = 0.2


class Run:
    """One run on the server; `data` is its last-read JSON (GET /api/v1/runs/{id})."""

    def __init__(self, http: Http, data: dict):
        self.http, self.data = http, data

    @property
    def id(self) -> int:
        return self.data["id"]

    @property
    def status(self) -> str:
        return self.data["status"]

    def __getitem__(self, key: str):
        return self.data[key]

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.data.get('name')!r} {self.status}>"

    def refresh(self) -> "Run":
        """Read the run again."""
        self.data = self.http.json("GET", f"runs/{self.id}")
        return self

    def wait(self, timeout: float | None = None, poll: float = 1.0) -> "Run":
        """Block until the run has finished (TimeoutError after timeout seconds); the run, refreshed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.refresh().status not in FINISHED:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"run {self.id} still {self.status} after {timeout} s")
            time.sleep(poll)
        return self

    def follow(self, out=None) -> "Run":
        """Show the epoch table live until the run ends: one updating output cell in Jupyter, plain lines in a
        terminal (or to `out`); driven by the run's event stream. The run, refreshed."""
        live.follow(self.http, self.id, out)
        return self.refresh()

    def epochs(self):
        """The epoch table as a DataFrame (stage and epoch 1-based, as the pages show them)."""
        return tables.epochs_frame(self.http.json("GET", f"runs/{self.id}/epochs"))

    def lr_finds(self) -> list[dict]:
        """Each LR-finder curve (stage 0-based, as stored) with its suggestion."""
        return self.http.json("GET", f"runs/{self.id}/lr_finds")

    def cancel(self) -> "Run":
        """Cancel a queued run, or ask a running one to stop; Conflict if it already ended."""
        self.http.json("POST", f"runs/{self.id}/cancel")
        return self.refresh()

    def retry(self, from_checkpoint: bool = True) -> "Run":
        """Queue a failed or cancelled run again under its id, from its last checkpoint or from scratch."""
        self.data = self.http.json("POST", f"runs/{self.id}/retry",
                                   json={"from": "checkpoint" if from_checkpoint else "scratch"})
        return self

    def edit(self, **changes) -> "Run":
        """Rename it, set its notes, replace its tags, archive or unarchive it (name=, notes=, tags=, archived=);
        ValidationError names a bad field."""
        self.data = self.http.json("PATCH", f"runs/{self.id}", json=changes)
        return self

    def delete(self) -> None:
        """Delete a finished run with its rows and files; Conflict while it is queued or running."""
        self.http.json("DELETE", f"runs/{self.id}")

    def predict(self, paths, wait: float | None = None) -> list[dict]:
        """The top classes for each image file from the run's exported model (a succeeded run): per image
        {'name', 'top': [{'label', 'probability'}, ...]}; polls while a predictor loads the model."""
        answer = self.prediction(paths, wait)
        if answer["status"] == "failed":
            raise RuntimeError(f"run {self.id}: prediction failed: {answer.get('error')}")
        return answer["results"]

    def prediction(self, paths, wait: float | None = None, on_wait=None, give_up: float = 600.0) -> dict:
        """The whole prediction answer (status done or failed, results, error), polling while it is pending (up to
        give_up seconds, then TimeoutError); on_wait(answer) sees each pending answer (its `note` says why)."""
        paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
        files = [("images", (p.name, p.read_bytes(), mimetypes.guess_type(p.name)[0] or "application/octet-stream"))
                 for p in paths]
        params = {} if wait is None else {"wait": wait}
        # The server holds the request up to its FITBOARD_PREDICT_WAIT (at most 120 s) before answering 202.
        answer = self.http.json("POST", f"runs/{self.id}/predict", files=files, params=params,
                                timeout=httpx.Timeout(PREDICT_TIMEOUT, connect=5.0))
        deadline = time.monotonic() + give_up
        while answer["status"] not in ("done", "failed"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {self.id}: no prediction after {give_up:.0f} s (is a predictor running?)")
            if on_wait is not None:
                on_wait(answer)
            time.sleep(PREDICT_POLL)
            answer = self.http.json("GET", f"predictions/{answer['id']}")
        return answer

    def download_model(self, path) -> Path:
        """Save the exported model (fastai's learn.export file) to path (a folder gets run-<id>-model.pkl)."""
        path = Path(path)
        if path.is_dir():
            path = path / f"run-{self.id}-model.pkl"
        part = path.with_name(path.name + ".part")
        with self.http.client.stream("GET", f"/api/v1/runs/{self.id}/model") as response:
            if response.status_code >= 400:
                response.read()
                check(response, "GET", f"/api/v1/runs/{self.id}/model")
            with part.open("wb") as fh:
                for chunk in response.iter_bytes():
                    fh.write(chunk)
        part.replace(path)  # a download cut short never leaves a file that looks whole
        return path


class RunList(list):
    """A list of runs' JSON (each in full: recipe, result) that turns into a DataFrame."""

    total: int | None = None  # how many runs matched on the server (the list may stop at a limit)

    def to_pandas(self):
        """One row per run (index id): its columns, the recipe's fields flattened, the result's metrics."""
        return tables.runs_frame(self)
