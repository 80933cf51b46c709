"""fitboard.fastai.FitboardCallback: log a fastai training run, trained anywhere, to a fitboard dashboard as a
tracked run: the learner's recipe-like facts, every epoch row, LR-finder curves, the final metrics, optionally the
confusion matrix, top losses and the exported model. Rows go through a background sender (fitboard.tracker):
training never waits for the dashboard and never fails because of it. A run nobody finished is finished when the
interpreter exits, with the status the script ended in (fitboard.exits); `with FitboardCallback(...) as cb:` finishes
it at the end of the block."""
from __future__ import annotations

import math
import platform
import tempfile
import threading
import time
from pathlib import Path

try:
    from fastai.callback.core import Callback
    from fastai.learner import Recorder
except ModuleNotFoundError as exc:  # the light client has no fastai: say how to get it, not just that it is missing
    raise ImportError(f"fitboard.fastai needs fastai ({exc.name} is not installed): pip install 'fitboard[fastai]' "
                      "(or pip install fastai) where you train") from exc

from fitboard import exits
from fitboard.tracker import EXPORT_PREFIX, Tracker

PROGRESS_INTERVAL = 0.5  # seconds between progress updates handed to the sender
FIT_END_WAIT = 5.0  # seconds the end of a fit waits for its rows to reach a dashboard that answers


def _name(obj) -> str | None:
    """A readable name for a function, class or instance (arch, loss, optimiser)."""
    if obj is None:
        return None
    if isinstance(obj, str):
        return obj
    inner = getattr(obj, "func", None)  # functools.partial (e.g. partial(Adam, ...))
    target = inner if inner is not None else obj
    return getattr(target, "__name__", None) or type(target).__name__


def _num(v) -> float | None:
    """A recorder value as a plain finite float, or None."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _safely(method):
    """Wrap a callback event so an error in tracking is said once and training carries on."""
    def wrapper(self, *args, **kwargs):
        if self.broken:
            return None
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # tracking must never fail the user's training
            self.broken = True
            self._say(f"fitboard: tracking stopped after an error in the callback ({exc!r}); training goes on")
            return None
    wrapper.__name__, wrapper.__doc__ = method.__name__, method.__doc__
    return wrapper


class FitboardCallback(Callback):
    """`learn.fit_one_cycle(5, cbs=FitboardCallback(url, name=...))`: one tracked run per callback instance,
    each fit call a stage. url/token default to FITBOARD_URL/FITBOARD_API_TOKEN. `finish()` ends the run (a fit's
    end does not, so several fits make one run); so does leaving a `with FitboardCallback(...) as cb:` block, and
    the interpreter's exit for a run still open."""

    order = Recorder.order + 1  # after Recorder: its log holds the whole epoch when after_epoch runs (fastai#3102)

    def __init__(self, url: str | None = None, name: str = "notebook", dataset: str = "notebook",
                 token: str | None = None, confusion: bool = False, top_losses: int = 0, export_model: bool = False,
                 flush_every: float = 1.0, max_pending: int = 10_000, verbose: bool = True):
        self.url, self.token, self.run_name, self.dataset = url, token, name, dataset
        self.want_confusion, self.want_top_losses, self.export_model = confusion, top_losses, export_model
        self.flush_every, self.max_pending, self.verbose = flush_every, max_pending, verbose
        self.tracker: Tracker | None = None
        self.export_path: Path | None = None  # the model's temporary export, until the tracker has sent it
        self.learner = None
        self.stage, self.broken, self.side, self.finished, self.in_fit = -1, False, False, False, False
        self.fit_done = False  # the last training fit reached its end (after_fit), so an exit then is a success
        self.fit_thread: int | None = None  # the thread that trains: its exception is the run's end
        self.last_metrics: dict = {}  # the last epoch row's valid_loss/accuracy/error_rate, the result at an exit
        self.delivered = False  # the finish reached the dashboard
        self.lr_peak: list[float] = []
        self._last_progress = 0.0
        self._start = None

    # ---- plumbing ---------------------------------------------------------------------------------------------

    def _say(self, message: str) -> None:
        if self.verbose:
            print(message)

    @property
    def run_id(self) -> int | None:
        """The tracked run's id once the dashboard took it."""
        return None if self.tracker is None else self.tracker.run_id

    def _ensure_tracker(self) -> None:
        if self.tracker is None:
            self.tracker = Tracker(self.run_name, self.dataset, self.facts(), self.url, self.token,
                                   flush_every=self.flush_every, max_pending=self.max_pending, say=self._say)
            self._start = time.perf_counter()
            exits.watch(self)

    # ---- what the learner says about itself ---------------------------------------------------------------------

    def facts(self) -> dict:
        """arch, pretrained, normalize, loss, optimiser, label smoothing, metrics, split sizes and classes."""
        learn = self.learn
        loss = learn.loss_func
        facts = {"arch": _name(getattr(learn, "arch", None)) or _name(type(learn.model)),
                 "loss_func": _name(loss), "opt_func": _name(learn.opt_func),
                 "metrics": [m.name for m in learn.metrics],
                 "host": platform.node()[:200]}
        if getattr(learn, "pretrained", None) is not None:
            facts["pretrained"] = bool(learn.pretrained)
        if getattr(learn, "normalize", None) is not None:
            # vision_learner adds the pretrained weights' (ImageNet) stats, and only for pretrained weights
            facts["normalize"] = "imagenet" if learn.normalize and getattr(learn, "pretrained", False) else "none"
        eps = getattr(loss, "eps", None)
        if "LabelSmoothing" in type(loss).__name__ and eps:
            facts["label_smoothing"] = float(eps)
        dls = learn.dls
        try:
            facts["n_train"], facts["n_valid"] = len(dls.train_ds), len(dls.valid_ds)
        except (TypeError, AttributeError):
            pass
        vocab = getattr(dls, "vocab", None)
        if vocab is not None:
            facts["classes"] = [str(v)[:200] for v in list(vocab)[:1000]]
        try:
            import fastai

            facts["fastai"] = fastai.__version__
        except Exception:
            pass
        return facts

    def _mixup(self) -> float | None:
        """MixUp's alpha when a MixUp callback is on the learner."""
        for cb in self.learn.cbs:
            if type(cb).__name__ in ("MixUp", "CutMix"):
                alpha = getattr(getattr(cb, "distrib", None), "concentration1", None)
                return _num(alpha if alpha is not None else getattr(cb, "alpha", None))
        return None

    def _frozen(self) -> bool | None:
        opt = self.learn.opt
        return None if opt is None else bool(getattr(opt, "frozen_idx", 0))

    def _stage_plan(self) -> dict:
        """This fit as a recipe stage: epochs, image size, batch size, freeze, lr (the peak per parameter group
        seen so far: fit_one_cycle's lr_max once past its warm-up), MixUp."""
        plan = {"stage": self.stage, "epochs": int(self.n_epoch), "bs": getattr(self.dls.train, "bs", None),
                "freeze": self._frozen(), "mixup": self._mixup(), "schedule": self.schedule}
        if self.size:
            plan["size"] = self.size
        peaks = [p for p in self.lr_peak if p and p > 0]
        if peaks:
            plan["lr"] = peaks[0] if max(peaks) == min(peaks) else [min(peaks), max(peaks)]
        return {k: v for k, v in plan.items() if v is not None}

    # ---- fastai events --------------------------------------------------------------------------------------------

    @_safely
    def before_fit(self):
        # lr_find and get_preds are not stages (the finder's curve is kept for the next stage); learn.validate()
        # sends before_fit too, but never before_train, so a stage begins at its first training pass.
        self.side = hasattr(self.learn, "lr_finder") or hasattr(self.learn, "gather_preds")
        self.in_fit = False
        self.learner = self.learn  # fit(cbs=...) detaches the callback afterwards; finish() still needs the learner
        self.fit_thread = threading.get_ident()
        self._ensure_tracker()

    @_safely
    def before_train(self):
        self._train_start = time.perf_counter()
        if self.side or self.in_fit:
            return
        self.in_fit, self.fit_done = True, False
        self.stage += 1
        self.size, self.lr_peak = None, []
        self.schedule = "fit_one_cycle" if any(type(cb).__name__ == "ParamScheduler" for cb in self.learn.cbs) \
            else "fit"

    @_safely
    def after_batch(self):
        if self.side or not self.training or not self.in_fit:
            return
        hypers = self.opt.hypers
        if len(self.lr_peak) != len(hypers):
            self.lr_peak = [0.0] * len(hypers)
        for i, h in enumerate(hypers):
            lr = h.get("lr", 0.0)
            if lr > self.lr_peak[i]:
                self.lr_peak[i] = float(lr)
        if self.size is None:
            x = self.xb[0] if self.xb else None
            shape = getattr(x, "shape", ())
            self.size = int(shape[-1]) if len(shape) >= 3 else 0
            self.tracker.put("stage", self._stage_plan())
        now = time.perf_counter()
        if now - self._last_progress >= PROGRESS_INTERVAL:
            self._last_progress = now
            batch, total = self.iter + 1, self.n_iter
            elapsed = now - self._train_start
            smooth = self.recorder.smooth_loss.value if hasattr(self.learn, "recorder") else None
            self.tracker.put("progress", {"stage": self.stage, "epoch": int(self.epoch), "batch": batch,
                                          "total": total, "elapsed": elapsed,
                                          "eta": elapsed / batch * (total - batch), "smooth_loss": _num(smooth),
                                          "epoch_count": int(self.n_epoch)})

    @_safely
    def before_epoch(self):
        self._epoch_start = time.perf_counter()

    @_safely
    def after_epoch(self):
        if self.side or not self.in_fit:
            return  # learn.validate() also sends before/after_epoch, outside any fit: not a row
        # Read the recorder's completed log for this epoch (Recorder.after_epoch ran before us: order above it),
        # so the last epoch's values are the last epoch's, not the one before.
        names = list(self.recorder.metric_names)
        row = dict(zip(names, self.recorder.log))
        metrics = {k: _num(v) for k, v in row.items() if k not in ("epoch", "train_loss", "valid_loss", "time")}
        self.tracker.put("epoch", {"stage": self.stage, "epoch": int(row.get("epoch", self.epoch)),
                                   "train_loss": _num(row.get("train_loss")),
                                   "valid_loss": _num(row.get("valid_loss")), "metrics": metrics,
                                   "seconds": time.perf_counter() - self._epoch_start})
        self.tracker.put("stage", self._stage_plan())  # the lr peak is known by now
        self.last_metrics = {k: v for k, v in {"valid_loss": _num(row.get("valid_loss")), **metrics}.items()
                             if k in ("valid_loss", "accuracy", "error_rate") and v is not None}

    @_safely
    def after_fit(self):
        if self.side and hasattr(self.learn, "lr_finder"):
            self._lr_find_curve()
        if self.in_fit:  # a training fit ended (fastai skips after_fit when an exception stops it)
            self.fit_done = True
            self.tracker.flush(FIT_END_WAIT)  # its last rows reach the dashboard before the script goes on
        self.side, self.in_fit = False, False

    def _lr_find_curve(self) -> None:
        """The finder's curve (as fastai's lr_find plots it) and its valley suggestion, for the next stage."""
        from fastai.callback.schedule import valley

        rec = self.recorder
        num_it = getattr(self.learn.lr_finder, "num_it", len(rec.lrs))
        lrs = [float(x) for x in rec.lrs[num_it // 10:-5]]
        losses = [float(x) for x in rec.losses[num_it // 10:-5]]
        suggestion = None
        if len(lrs) > 2:
            import torch

            suggestion, _ = valley(torch.tensor(lrs, dtype=torch.float64), torch.tensor(losses), num_it)
        self.tracker.put("lr_find", {"stage": self.stage + 1, "suggestion": _num(suggestion), "method": "valley",
                                     "lrs": lrs[:2000], "losses": [_num(v) for v in losses[:2000]]})

    # ---- the end ----------------------------------------------------------------------------------------------------

    def finish(self, status: str = "succeeded", error: str | None = None, timeout: float = 30.0) -> int | None:
        """End the tracked run: final validation metrics (learn.validate), the confusion matrix and top losses if
        asked, the exported model if asked; waits up to timeout seconds for the sender. The run's id."""
        return self._end(status, error, timeout, full=True)

    def __enter__(self) -> FitboardCallback:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        """The block's end finishes the run: as finish() does, or failed/cancelled by the exception (not swallowed)."""
        status, error = exits.outcome(exc)
        try:
            self._end(status, error, 30.0, full=status == "succeeded")
        except Exception as bug:  # the block's own exception (if any) is the one the user must see
            self._say(f"fitboard: could not finish the tracked run ({bug!r})")
        return False

    def end_at_exit(self, timeout: float) -> None:
        """The interpreter is exiting with this run open: end it as the script ended (see fitboard.exits)."""
        # A broken callback saw no more events: whether its last fit completed is not known, so it is not held
        # against the run.
        unfinished_fit = self.stage >= 0 and not self.fit_done and not self.broken
        exc = exits.fatal(self.fit_thread)
        if exc is None and unfinished_fit:
            exc = exits.last_exception()  # a notebook's interrupted fit (IPython keeps it there)
        status, error = exits.outcome(exc)
        if status == "succeeded" and unfinished_fit:
            status, error = "failed", f"the script ended during stage {self.stage + 1}, before its fit completed"
        self._end(status, error, timeout, full=False)
        if self.delivered:
            self._say(f"fitboard: run {self.run_id} finished at exit: {status}" + (f" ({error})" if error else ""))

    def _end(self, status: str, error: str | None, timeout: float, full: bool) -> int | None:
        """Send the finish (with the parts that run the learner only when full) and wait for the sender."""
        if self.tracker is None or self.finished:
            return self.run_id
        self.finished = True
        exits.unwatch(self)
        if self.learn is None:
            self.learn = self.learner
        body = {"status": status, "error": error, "metrics": self.last_metrics,
                "seconds": time.perf_counter() - self._start if self._start else None}
        # Each part on its own: one that fails is said and left out; the end of tracking never raises either.
        parts = [("final metrics", lambda: {"metrics": self._final_metrics()})] if full else []
        if full and (self.want_confusion or self.want_top_losses):
            parts.append(("confusion matrix and top losses", self._interpretation))
        if full and self.export_model:
            parts.append(("exported model", self._export))
        for what, part in parts:
            try:
                body.update(part() or {})
            except Exception as exc:
                self._say(f"fitboard: could not send the {what} ({exc!r}); finishing the run without it")
        self.tracker.put("finish", body)
        self.delivered = self.tracker.close(timeout)
        return self.run_id

    def _final_metrics(self) -> dict:
        """valid_loss, accuracy and error_rate of the weights as they are now."""
        values = self.learn.validate()
        names = ["valid_loss", *[m.name for m in self.learn.metrics]]
        found = dict(zip(names, values))
        return {k: _num(found.get(k)) for k in ("valid_loss", "accuracy", "error_rate") if k in found}

    def _interpretation(self) -> dict:
        """The confusion matrix (labels in vocab order) and the top losses, from one pass over the validation set."""
        preds, targs, losses = self.learn.get_preds(with_loss=True)
        decoded = preds.argmax(dim=1)
        vocab = [str(v) for v in self.learn.dls.vocab]
        out = {}
        if self.want_confusion:
            matrix = [[0] * len(vocab) for _ in vocab]
            for t, p in zip(targs.tolist(), decoded.tolist()):
                matrix[int(t)][int(p)] += 1
            out["confusion"] = {"labels": vocab, "matrix": matrix}
        if self.want_top_losses:
            items = getattr(self.learn.dls.valid_ds, "items", None)
            top = losses.topk(min(int(self.want_top_losses), 100, len(losses)))
            rows = []
            for loss, i in zip(top.values.tolist(), top.indices.tolist()):
                item = i if items is None else (items.iloc[i] if hasattr(items, "iloc") else items[i])
                image_id = Path(str(item.iloc[0] if hasattr(item, "iloc") else item)).name[:200]  # a df row: 1st col
                rows.append({"image_id": image_id, "actual": vocab[int(targs[i])], "predicted": vocab[int(decoded[i])],
                             "loss": _num(loss), "probability": _num(preds[i].max())})
            out["top_losses"] = rows
        return out

    def _export(self) -> None:
        """learn.export to a temporary file, handed to the sender to upload (the dashboard stores it, never loads
        it)."""
        folder = Path(tempfile.mkdtemp(prefix=EXPORT_PREFIX))  # removed by the tracker once uploaded
        path = self.export_path = folder / "export.pkl"
        learn = self.learn  # removing the callback unsets its .learn
        with learn.removed_cbs(self):  # the callback holds a thread and a socket: not part of the model
            learn.export(path)
        self.tracker.put("model", str(path))
