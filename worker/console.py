"""The terminal's view of a run, from events as JSON dicts: fastai's epoch table (stages and epochs 1-based), a
one-line progress bar on a terminal only, and the result in a few lines. `fitboard train` prints through it (via
ConsoleReporter) and so does `fitboard submit --follow` from a run's event stream, where no pydantic is installed."""
from __future__ import annotations

import sys
from typing import TextIO

from fitboard.app.core.numbering import where
from fitboard.app.core.progress import progress_text

COLUMNS = ("stage", "epoch", "train_loss", "valid_loss", "accuracy", "error_rate", "time")


def isatty(stream) -> bool:
    """Whether a stream is a terminal (a progress bar's carriage returns only make sense there)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def cell(v) -> str:
    """Format a table cell as fastai does."""
    return f"{v:.6f}" if isinstance(v, float) else str(v)


def _f4(v: float | None) -> str:
    return "–" if v is None else f"{v:.4f}"


def result_text(result: dict) -> str:
    """A few lines that say how a run ended: metrics, TTA, best epoch, model file."""
    m = result.get("metrics") or {}
    lines = [f"validation: loss {_f4(m.get('valid_loss'))}  accuracy {_f4(m.get('accuracy'))}  "
             f"error_rate {_f4(m.get('error_rate'))}"]
    if t := result.get("tta"):
        lines.append(f"tta (n={t.get('n')}, use_max={t.get('use_max')}): accuracy {_f4(t.get('accuracy'))}  "
                     f"error_rate {_f4(t.get('error_rate'))}")
    if b := result.get("best"):
        lines.append(f"best {b['metric']} {_f4(b.get('value'))} at {where(b['stage'], b['epoch'])} (weights reloaded)")
    if result.get("model_path"):
        lines.append(f"model: {result['model_path']}")
    return "\n".join(lines)


class Console:
    """Lines on out; the progress bar on bar, redrawn in place, only when bar is a terminal (a log gets no codes)."""

    def __init__(self, out: TextIO | None = None, bar: TextIO | None = None, tty: bool | None = None):
        self.out, self.bar = out or sys.stdout, bar or sys.stderr
        self.tty = isatty(self.bar) if tty is None else tty
        self.header_done = False

    def line(self, text: str) -> None:
        """One line of the table or of the story, clearing the bar first."""
        if self.tty:
            self.bar.write("\r\033[K")
        self.out.write(text + "\n")
        self.out.flush()

    def epoch(self, row: dict) -> None:
        """One epoch row (stage and epoch as stored, 0-based), the header before the first."""
        if not self.header_done:
            self.line("  ".join(f"{c:>10}" for c in COLUMNS))
            self.header_done = True
        m = row.get("metrics") or {}
        cells = (row["stage"] + 1, row["epoch"] + 1, row.get("train_loss"), row.get("valid_loss"), m.get("accuracy"),
                 m.get("error_rate"), f"{row.get('seconds') or 0:.1f}s")
        self.line("  ".join(f"{cell(c):>10}" for c in cells))

    def progress(self, p: dict) -> None:
        """The bar: where the run is in words, elapsed<left, the whole run's ETA and the smoothed loss."""
        if not self.tty:
            return
        filled = int(p["batch"] / max(p["total"], 1) * 30)
        loss, run_eta = p.get("smooth_loss"), p.get("run_eta")
        self.bar.write(f"\r\033[K[{'#' * filled}{'.' * (30 - filled)}] {progress_text(p)} "
                       f"{p.get('elapsed') or 0:.0f}s<{p.get('eta') or 0:.0f}s"
                       + (f", run ETA {run_eta:.0f}s" if run_eta is not None else "")
                       + (f" loss {loss:.4f}" if loss is not None else ""))
        self.bar.flush()

    def result(self, result: dict) -> None:
        """How the run ended (only when it has metrics)."""
        if result.get("metrics"):
            self.line(result_text(result))
