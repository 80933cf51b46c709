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


Timed = tuple[int, float, float, float]  # a finished epoch: (stage, seconds, of which training, of which validation)
VALID_COST = 1 / 3  # a validation batch is a forward pass only: about a third of a training step's work


def _area(plan: list[tuple[int, int]], stage: int, to: int) -> float:
    """How much more an image of stage `to` costs than one of `stage`: the ratio of their pixel areas."""
    return (plan[to][1] / plan[stage][1]) ** 2


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _measured(stage: int, timed: list[Timed]) -> tuple[int, list[Timed]] | None:
    """(stage, its epochs) to learn from: this stage's own epochs, else the latest epoch timed; None before any."""
    own = [t for t in timed if t[0] == stage]
    return (stage, own) if own else (timed[-1][0], [timed[-1]]) if timed else None


def run_eta(plan: list[tuple[int, int]], stage: int, epoch: int, batch: int, total: int, elapsed: float,
            timed: list[Timed], valid_batches: int = 0, final_passes: int = 0) -> float | None:
    """Seconds left in the whole run: this epoch, the stage's other epochs, the later stages and the final passes.

    plan is (epochs, size) per stage; timed is (stage, seconds, training seconds, validation seconds) per finished
    epoch; elapsed is this epoch's training pass so far, batch of total; valid_batches: the validation set's
    batches; final_passes: the validation passes after training (scoring, and TTA's). An epoch is a training pass,
    a validation pass and the rest (checkpoint, rows), each measured on this stage's own epochs, else on the latest
    epoch timed scaled by image area (the main cost that changes between stages); training is blended into this
    epoch's pace as the epoch goes on. Before any epoch is timed, validation is guessed at a third of a training
    step per batch. So the estimate does not jump when a stage's first epoch ends."""
    if batch <= 0 or total <= 0 or not 0 <= stage < len(plan):
        return None
    pace = elapsed / batch  # seconds per training batch in this epoch so far
    learnt = _measured(stage, timed)
    if learnt is None:
        train = pace * total
        valid, rest = pace * valid_batches * VALID_COST, 0.0
        this_train = pace * (total - batch)
    else:
        at, epochs = learnt
        scale = _area(plan, at, stage)
        prior = _mean([t[2] for t in epochs]) * scale  # what this stage's training pass should take
        valid = _mean([t[3] for t in epochs]) * scale
        rest = max(_mean([t[1] - t[2] - t[3] for t in epochs]), 0.0)
        # Early in an epoch its pace still carries the loaders' start: lean on what was measured, then on the pace.
        done = batch / total
        train = prior if at == stage else (1 - done) * prior + done * pace * total
        this_train = (1 - done) * max(prior - elapsed, 0.0) + done * pace * (total - batch)

    def epoch_cost(later: int) -> float:
        return (train + valid) * _area(plan, stage, later) + rest

    left = this_train + valid + rest + max(plan[stage][0] - epoch - 1, 0) * epoch_cost(stage)
    left += sum(plan[later][0] * epoch_cost(later) for later in range(stage + 1, len(plan)))
    return left + final_passes * valid * _area(plan, stage, len(plan) - 1)
