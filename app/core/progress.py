"""A run's progress in words, for every phase (presize cache, LR finder, training, final scoring, TTA).

The page's template, run.js (`progressWords`, kept in step with this) and the console bar say the same thing.
A progress document is a ProgressEvent as JSON; an old one without a phase is training.
"""
from __future__ import annotations

from fitboard.app.core.numbering import progress_words

PRESIZE, LR_FIND, TRAIN, SCORE, TTA = "presize cache", "lr_find", "train", "score", "tta"
TITLES = {PRESIZE: "Presize cache", LR_FIND: "LR finder", TRAIN: "Training", SCORE: "Final scoring",
          TTA: "Test-time augmentation"}
# What the phase's own ETA covers, when the whole run's is not known.
ETA_OF = {PRESIZE: "the presize cache", LR_FIND: "the LR finder", TRAIN: "this epoch", SCORE: "the final scoring",
          TTA: "TTA"}


def phase(b: dict) -> str:
    """The phase a progress document describes (training when it names none)."""
    return b.get("phase") or TRAIN


def progress_title(b: dict) -> str:
    """The card's heading: 'Training', 'LR finder', 'Final scoring', 'Test-time augmentation'."""
    return TITLES.get(phase(b), TITLES[TRAIN])


def _of(n) -> str:
    return f" of {n}" if n else ""


def progress_text(b: dict) -> str:
    """Where the run is, 1-based: 'stage 1 of 2 · LR finder step 40 of 100', 'TTA pass 2 of 5', ..."""
    p, stage = phase(b), f"stage {b['stage'] + 1}{_of(b.get('stage_count'))}"
    if p == LR_FIND:
        return f"{stage} · LR finder step {b['batch']}{_of(b['total'])}"
    if p == PRESIZE:
        return f"{stage} · resizing image {b['batch']}{_of(b['total'])} into the presize cache"
    if p == SCORE:
        return f"scoring the validation set with the final weights · batch {b['batch']}{_of(b['total'])}"
    if p == TTA:
        plain = " (unaugmented)" if b["total"] and b["batch"] == b["total"] else ""
        return f"TTA pass {b['batch']}{_of(b['total'])}{plain}"
    return progress_words(b["stage"], b.get("stage_count"), b["epoch"], b.get("epoch_count"), b["batch"], b["total"])


def progress_eta(b: dict) -> tuple[float | None, str]:
    """(seconds, what they cover): the whole run's ETA when known, else this phase's."""
    if b.get("run_eta") is not None:
        return b["run_eta"], "the whole run"
    return b.get("eta"), ETA_OF.get(phase(b), ETA_OF[TRAIN])
