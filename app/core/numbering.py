"""One numbering convention: stages and epochs are stored 0-based and shown to people 1-based; and the whole-run ETA.

Every place that shows a position (pages, CLI, CSV, compare) goes through here, so "stage 2 · epoch 3" means the
same thing everywhere and the chart's cumulative epoch matches the table's.
"""
from __future__ import annotations


def where(stage: int, epoch: int) -> str:
    """A stored (stage, epoch) in words, 1-based: 'stage 2 · epoch 3'."""
    return f"stage {stage + 1} · epoch {epoch + 1}"


def progress_words(stage: int, stages: int | None, epoch: int, epochs: int | None, batch: int, total: int) -> str:
    """'stage s of S · epoch e of E · batch b of B' (the 'of' parts only when known)."""
    of = lambda n: f" of {n}" if n else ""  # noqa: E731
    return f"stage {stage + 1}{of(stages)} · epoch {epoch + 1}{of(epochs)} · batch {batch}{of(total)}"


def run_eta(plan: list[tuple[int, int]], stage: int, epoch: int, batch: int, total: int, elapsed: float,
            timed: list[tuple[int, float]]) -> float | None:
    """Seconds left in the whole run, from the epochs already timed.

    plan is (epochs, size) per stage; timed is (stage, seconds) per finished epoch. The current stage's epoch time is
    the mean of its own finished epochs (it is re-estimated per stage because sizes and freezing change), else this
    epoch's pace so far; later stages scale it by their image area, the main cost that changes between stages."""
    if batch <= 0 or total <= 0 or not 0 <= stage < len(plan):
        return None
    own = [s for st, s in timed if st == stage]
    epoch_time = sum(own) / len(own) if own else elapsed / batch * total
    pace = elapsed / batch * (total - batch)  # this epoch's training pass at its own pace so far
    this_epoch = max(epoch_time - elapsed, pace) if own else pace
    epochs, size = plan[stage]
    left = this_epoch + max(epochs - epoch - 1, 0) * epoch_time
    for later_epochs, later_size in plan[stage + 1:]:
        left += later_epochs * epoch_time * (later_size / size) ** 2
    return left
