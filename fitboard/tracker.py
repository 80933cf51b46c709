"""The sender behind FitboardCallback: training hands it rows through a queue (never waiting), and one background
thread opens the tracked run and posts the rows in batches. A dashboard that is down only delays them: rows are
kept and sent when it answers, up to max_pending (then the oldest are dropped, said once). Nothing here raises into
training."""
from __future__ import annotations

import logging
import queue
import shutil
import tempfile
import threading
import time
from pathlib import Path

from fitboard.errors import Conflict, FitboardError, Unreachable
from fitboard.http import Http

log = logging.getLogger("fitboard.tracker")
MAX_ROWS_PER_POST = 1000  # the API's bound per batch
MAX_BACKOFF = 30.0
EXPORT_PREFIX = "fitboard-export-"  # the callback's temporary export folders: the tracker's to remove once sent


def discard_export(model: str) -> None:
    """Remove an uploaded model's file when it is the callback's temporary export (a folder of its own under the
    temporary directory, named EXPORT_PREFIX...): each tracked run left about 5 MB behind in /tmp."""
    folder = Path(model).parent
    if folder.name.startswith(EXPORT_PREFIX) and folder.parent == Path(tempfile.gettempdir()):
        shutil.rmtree(folder, ignore_errors=True)


def _trimmed(finish: dict) -> dict | None:
    """A refused finish without its details (confusion, top losses, best), then without its metrics, then none: the
    run still ends with its status and error."""
    for keys in (("confusion", "top_losses", "best"), ("metrics",)):
        if any(k in finish for k in keys):
            return {k: v for k, v in finish.items() if k not in keys}
    return None


class Tracker:
    """Posts one tracked run's rows from a daemon thread; `put_*` only enqueue."""

    def __init__(self, name: str, dataset: str = "notebook", facts: dict | None = None, url: str | None = None,
                 token: str | None = None, flush_every: float = 1.0, max_pending: int = 10_000,
                 timeout: float = 5.0, say=None):
        self.name, self.dataset, self.facts = name, dataset, dict(facts or {})
        self.flush_every, self.max_pending = flush_every, max_pending
        self.http = Http(url, token, timeout=timeout, retries=0)  # the thread's own backoff spaces the tries
        self.say = say or (lambda msg: log.warning(msg))
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.run_id: int | None = None
        self.stopped = False  # the run ended on the server (cancelled, lost): nothing more is sent
        self.dropped = 0
        self.down = False  # the last try found the dashboard unreachable (or failing)
        self._said: set[str] = set()
        # What is waiting to go: stage plans and epoch rows keyed, so a re-sent row replaces the waiting one.
        self.stages: dict[int, dict] = {}
        self.epochs: dict[tuple[int, int], dict] = {}
        self.finds: dict[int, dict] = {}
        self.progress: dict | None = None
        self.finish: dict | None = None
        self.model: str | None = None
        self.sent_epochs = 0
        self._flushes: list[threading.Event] = []  # callers of flush() waiting for what was handed over so far
        self._closing = threading.Event()
        self._deadline = float("inf")
        self._next_try = 0.0
        self._backoff = 1.0
        self.thread = threading.Thread(target=self._loop, name="fitboard-tracker", daemon=True)
        self.thread.start()

    # ---- called from training: enqueue only -------------------------------------------------------------------

    def put(self, kind: str, payload) -> None:
        """Hand something to the sender (stage, epoch, lr_find, progress, facts, finish, model); never blocks."""
        self.inbox.put((kind, payload))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait up to timeout seconds until everything handed over so far is sent; True when it was. Returns at once
        when the dashboard is known to be down, so training never waits for one that is not answering."""
        if self.stopped or self.down or not self.thread.is_alive():
            return False
        done = threading.Event()
        self.inbox.put(("flush", done))
        return done.wait(timeout) and not self.down and self._pending_count() == 0

    def close(self, timeout: float = 30.0) -> bool:
        """Send what is left (with the finish), trying for up to timeout seconds; True when everything went."""
        self._deadline = time.monotonic() + timeout
        self._closing.set()
        self.inbox.put(("wake", None))
        self.thread.join(timeout + 5)
        left = self._pending_count()
        if left and not self.stopped:
            self._say_once("unsent", f"fitboard: {left} tracked items were not sent to {self.http.url}: the "
                                     f"dashboard did not answer within {timeout:.0f} s of the end")
        self.http.close()
        return not self.thread.is_alive() and left == 0

    # ---- the sender thread -------------------------------------------------------------------------------------

    def _say_once(self, key: str, message: str) -> None:
        if key not in self._said:
            self._said.add(key)
            try:
                self.say(message)
            except Exception:  # a broken printer must not stop the sender
                pass

    def _pending_count(self) -> int:
        return len(self.epochs) + len(self.finds) + len(self.stages) + (self.finish is not None) + (
            self.model is not None)

    def _take(self, kind: str, payload) -> None:
        """Fold one item into what is waiting."""
        if kind == "stage":
            self.stages[payload["stage"]] = payload
        elif kind == "epoch":
            self.epochs[(payload["stage"], payload["epoch"])] = payload
            if len(self.epochs) > self.max_pending:  # the dashboard has been away long: keep the newest
                self.epochs.pop(next(iter(self.epochs)))
                self.dropped += 1
                self._say_once("dropped", f"fitboard: dashboard unreachable for long; dropping tracked epoch rows "
                                          f"beyond {self.max_pending} waiting (training is unaffected)")
        elif kind == "lr_find":
            self.finds[payload["stage"]] = payload
        elif kind == "progress":
            self.progress = payload
        elif kind == "facts":
            self.facts.update(payload)
        elif kind == "finish":
            self.finish = payload
        elif kind == "model":
            self.model = payload
        elif kind == "flush":
            self._flushes.append(payload)

    def _drain(self, wait: float) -> None:
        """Take everything queued, waiting up to `wait` seconds for the first item."""
        try:
            self._take(*self.inbox.get(timeout=wait))
            while True:
                self._take(*self.inbox.get_nowait())
        except queue.Empty:
            pass

    def _loop(self) -> None:
        while True:
            closing = self._closing.is_set()
            self._drain(0.0 if closing else self.flush_every)
            ok = True
            # A flush (a fit just ended) is tried at once, past the backoff: it waits for this answer.
            if not self.stopped and (closing or self._flushes or time.monotonic() >= self._next_try):
                ok = self._attempt()
            self._release(ok)
            if closing:
                left = self._deadline - time.monotonic()
                if self._pending_count() == 0 or self.stopped or left <= 0:
                    return
                if not ok:  # closing: try about every second until close()'s timeout
                    time.sleep(min(1.0, left))

    def _release(self, ok: bool) -> None:
        """Wake the flush() callers once everything went, or the try failed (they do not wait for a retry)."""
        if self._flushes and (not ok or self.stopped or self._pending_count() == 0):
            for done in self._flushes:
                done.set()
            self._flushes.clear()

    def _attempt(self) -> bool:
        """One try at sending what is waiting; False when it must be tried again later."""
        try:
            self._send()
            self._backoff, self.down = 1.0, False
            return True
        except FitboardError as exc:
            self._failed(exc)
        except Exception as exc:  # a bug here must cost tracking, never the training
            self._say_once("bug", f"fitboard: tracking stopped after an unexpected error: {exc!r}")
            self.stopped = True
        return False

    def _failed(self, exc: FitboardError) -> None:
        """A refused or unanswered post: wait and try again, or stop for good when the run has ended."""
        if isinstance(exc, Conflict):
            self.stopped = True
            self._say_once("ended", f"fitboard: run {self.run_id} ended on the dashboard ({exc.detail}); "
                                    "tracking stops, training goes on")
            return
        if isinstance(exc, Unreachable) or exc.status >= 500 or exc.status in (408, 429):
            self.down = True
            self._say_once("down", f"fitboard: dashboard at {self.http.url} unreachable ({exc.detail}); "
                                   "keeping rows and retrying")
            self._next_try = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, MAX_BACKOFF)
            return
        # 4xx other than 409: this batch will never be taken; drop it so later rows still go.
        self._say_once(f"refused-{exc.status}", f"fitboard: the dashboard refused tracked rows: {exc}")
        self.epochs.clear()
        self.finds.clear()
        self.stages.clear()
        if self.finish is not None and exc.path.endswith("/finish"):
            # Kept whole, a refused finish (a confusion of 1,001 classes) was posted until close() timed out, saying
            # the dashboard did not answer, and the run stayed running until failed as lost.
            self.finish = _trimmed(self.finish)
        if self.run_id is None:
            self.stopped = True

    def _send(self) -> None:
        """Open the run if needed, then post what is waiting (rows in bounded batches), the model and the finish."""
        if self.run_id is None:
            run = self.http.json("POST", "tracked", json={"name": self.name, "dataset": self.dataset,
                                                          "facts": self.facts})
            self.run_id = run["id"]
            self._say_once("opened", f"fitboard: tracking run {self.run_id} at {self.http.url}/runs/{self.run_id}")
        while self.stages or self.epochs or self.finds or self.progress is not None:
            keys = list(self.epochs)[:MAX_ROWS_PER_POST]
            batch = {"stages": list(self.stages.values()), "epochs": [self.epochs[k] for k in keys],
                     "lr_finds": list(self.finds.values())}
            if self.progress is not None:
                batch["progress"] = self.progress
            self.http.json("POST", f"tracked/{self.run_id}/rows", json=batch)
            self.stages.clear()
            self.finds.clear()
            self.progress = None
            for k in keys:
                del self.epochs[k]
            self.sent_epochs += len(keys)
        if self.model is not None:
            with open(self.model, "rb") as fh:
                self.http.request("PUT", f"tracked/{self.run_id}/model", content=fh,
                                  headers={"Content-Type": "application/octet-stream"})
            discard_export(self.model)
            self.model = None
        if self.finish is not None:
            self.http.json("POST", f"tracked/{self.run_id}/finish", json=self.finish)
            self.finish = None
            self.stopped = True
