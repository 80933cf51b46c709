"""The predictor process: claims prediction requests from the database, answers them with the run's exported model
(kept loaded for the next request), and writes the top classes back. Only models fitboard's own workers exported
into the artifact store are ever loaded, by run id; an uploaded file is only ever decoded as an image."""
from __future__ import annotations

import base64
import io
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from collections import OrderedDict

import torch
from fastai.learner import load_learner
from fastai.vision.core import PILImage, TensorImage
from sqlalchemy import Engine

from fitboard.app.core.artifacts import store_for
from fitboard.app.core.settings import Settings
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import Prediction
from fitboard.app.store.predictions import (
    claim_prediction,
    drop_predictor,
    fail_prediction,
    finish_prediction,
    mark_loading,
    purge_predictions,
    record_predictor,
)

log = logging.getLogger(__name__)
TOP_K = 5
# Seconds between looks for a request when there is none: quick while someone is predicting (a warm answer stays
# well under 300 ms), slower once nobody has for a while, so an idle predictor costs its host next to nothing.
IDLE_POLL, IDLE_POLL_SLOW, BUSY_WINDOW = 0.05, 0.25, 60.0
LEASE_TTL = 15.0  # seconds a predictor counts as alive after its last lease renewal
VALID_SPLIT = 1  # fastai's split index of the validation set: its transforms, not the training augmentations


def predict_batch(learn, images: list[bytes]) -> torch.Tensor:
    """Class probabilities for raw image files: the validation item and batch transforms the run was scored with
    (presize, center crop to size, normalize), the model in eval mode, the loss's activation. No DataLoader: its
    set-up costs more than a small batch's forward pass."""
    valid = learn.dls.valid
    # A DataLoader tells its pipelines which split they serve when it starts iterating; a freshly loaded learner
    # has never iterated, so without this its pipelines run the training augmentations (random crop, flip,
    # lighting) on every prediction and the same image gets a different answer each time.
    valid.after_item.split_idx = valid.after_batch.split_idx = VALID_SPLIT
    items = [valid.after_item(PILImage.create(io.BytesIO(data))) for data in images]
    batch = valid.after_batch(TensorImage(torch.stack(items)).to(learn.dls.device))
    model = learn.model.eval()
    with torch.inference_mode():
        out = model(batch)
    activation = getattr(learn.loss_func, "activation", None)
    return (activation(out) if activation else torch.softmax(out, dim=1)).float().cpu()


class Predictor:
    """Answers prediction requests with a small cache of loaded learners (least recently used evicted)."""

    def __init__(self, engine: Engine, settings: Settings, name: str | None = None):
        self.engine, self.settings = engine, settings
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.lease_id = uuid.uuid4().hex[:16]
        self.learners: OrderedDict[int, object] = OrderedDict()
        self.models_dir = settings.home / "predictor" / self.lease_id

    def learner(self, run_id: int, prediction_id: int):
        """The run's learner, loaded from the artifact store on first use (the request says so meanwhile)."""
        if run_id in self.learners:
            self.learners.move_to_end(run_id)
            return self.learners[run_id]
        with session_scope(self.engine) as session:
            mark_loading(session, prediction_id)
        path = store_for(self.settings).fetch(run_id, "model", self.models_dir / f"{run_id}.pkl")
        if path is None:
            raise FileNotFoundError(f"run {run_id} has no exported model in {store_for(self.settings).location}")
        try:
            learn = load_learner(path, cpu=not torch.cuda.is_available())
        finally:
            path.unlink(missing_ok=True)
        self.learners[run_id] = learn
        while len(self.learners) > max(1, self.settings.predict_models):
            self.learners.popitem(last=False)
        return learn

    def predict(self, learn, names: list[str], images: list[str]) -> list[dict]:
        """Top classes with probabilities for each image, through the run's own validation transforms."""
        probs = predict_batch(learn, [base64.b64decode(b64) for b64 in images])
        vocab = [str(v) for v in learn.dls.vocab]
        out = []
        for name, row in zip(names, probs):
            values, idx = row.topk(min(TOP_K, len(vocab)))
            out.append({"name": name, "top": [{"label": vocab[int(i)], "probability": float(v)}
                                              for v, i in zip(values, idx)]})
        return out

    def answer(self, prediction: Prediction) -> None:
        """Answer one claimed request (or store why it could not be answered)."""
        started = time.perf_counter()
        try:
            learn = self.learner(prediction.run_id, prediction.id)
            results = self.predict(learn, prediction.names, prediction.images or [])
        except Exception as exc:  # a missing or unloadable model, an image the pipeline refuses
            log.exception("prediction %s failed", prediction.id)
            with session_scope(self.engine) as session:
                fail_prediction(session, prediction.id, f"{type(exc).__name__}: {exc}")
            return
        with session_scope(self.engine) as session:
            finish_prediction(session, prediction.id, results, time.perf_counter() - started)

    def beat(self) -> None:
        """Renew this predictor's lease (so the web knows one is alive) and purge old requests."""
        with session_scope(self.engine) as session:
            record_predictor(session, self.lease_id, self.name, LEASE_TTL)
            purge_predictions(session)

    def serve(self, stop: threading.Event) -> None:
        """Claim and answer requests until stop is set; a database outage is waited out, not fatal. stop: an Event, or
        anything with is_set() and wait(seconds) (app.core.signal_stop.SignalStop, as the CLI's)."""
        last_beat, last_request = 0.0, float("-inf")
        try:
            while not stop.is_set():
                try:
                    if time.monotonic() - last_beat > LEASE_TTL / 3:
                        self.beat()
                        last_beat = time.monotonic()
                    with session_scope(self.engine) as session:
                        claimed = claim_prediction(session, self.name)
                except Exception:
                    log.exception("predictor: database unavailable; retrying")
                    stop.wait(1.0)
                    continue
                if claimed is None:
                    recent = time.monotonic() - last_request < BUSY_WINDOW
                    stop.wait(IDLE_POLL if recent else IDLE_POLL_SLOW)
                else:
                    self.answer(claimed)
                    last_request = time.monotonic()
        finally:
            try:
                with session_scope(self.engine) as session:
                    drop_predictor(session, self.lease_id)
            except Exception:
                log.warning("predictor: could not give its lease back (it expires in %.0f s)", LEASE_TTL)
            shutil.rmtree(self.models_dir, ignore_errors=True)
