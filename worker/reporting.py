"""Reporters: where a run's events go (terminal table, JSON lines, a list; the database adds its own)."""
from __future__ import annotations

import json
import sys
from typing import TextIO

from app.jsonsafe import json_safe


class Reporter:
    """Receives a run's events as dicts with an 'event' key; subclasses decide where they go."""

    def emit(self, event: dict) -> None:
        """Handle one event (epoch, progress, lr_find, stage, note, result, error)."""

    def should_cancel(self) -> bool:
        """True when the user asked this run to stop; polled by the training callback."""
        return False


class SafeReporter(Reporter):
    """Wraps a reporter so that every event it receives is JSON-safe."""

    def __init__(self, inner: Reporter):
        self.inner = inner

    def emit(self, event: dict) -> None:
        self.inner.emit(json_safe(event))

    def should_cancel(self) -> bool:
        return self.inner.should_cancel()


class ListReporter(Reporter):
    """Keeps every event in memory (benchmarks, tests, embedding the engine in a notebook)."""

    def __init__(self):
        self.events: list[dict] = []

    def emit(self, event: dict) -> None:
        self.events.append(event)

    def of(self, kind: str) -> list[dict]:
        """Events of one kind, in order."""
        return [e for e in self.events if e["event"] == kind]


class JsonReporter(Reporter):
    """Prints one JSON object per line, flushed, for scripts that follow a run."""

    def __init__(self, out: TextIO = sys.stdout):
        self.out = out

    def emit(self, event: dict) -> None:
        self.out.write(json.dumps(event) + "\n")
        self.out.flush()


def _fmt(v) -> str:
    """Format a table cell as fastai does."""
    return f"{v:.6f}" if isinstance(v, float) else str(v)


class ConsoleReporter(Reporter):
    """Prints the epoch table as fastai does, with a one-line progress bar on stderr."""

    COLUMNS = ("stage", "epoch", "train_loss", "valid_loss", "accuracy", "error_rate", "time")

    def __init__(self, out: TextIO = sys.stdout, bar: TextIO = sys.stderr):
        self.out, self.bar = out, bar
        self.header_done = False

    def _clear_bar(self) -> None:
        self.bar.write("\r\033[K")

    def _line(self, text: str) -> None:
        self._clear_bar()
        self.out.write(text + "\n")
        self.out.flush()

    def emit(self, event: dict) -> None:
        kind = event["event"]
        if kind == "progress":
            done = event["batch"] / max(event["total"], 1)
            filled = int(done * 30)
            loss = event.get("smooth_loss")
            self.bar.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {event['batch']}/{event['total']} "
                           f"{event['elapsed']:.0f}s<{event['eta']:.0f}s" + (f" loss {loss:.4f}" if loss is not None else ""))
            self.bar.flush()
        elif kind == "stage":
            lr = event["lr"]
            lr_text = f"slice({lr[0]:.2e}, {lr[1]:.2e})" if isinstance(lr, list) else f"{lr:.2e}"
            self._line(f"stage {event['stage']}: {event['epochs']} epochs, size {event['size']} (presize "
                       f"{event['presize']}), bs {event['bs']}, {'frozen' if event['frozen'] else 'unfrozen'}, "
                       f"lr {lr_text}" + (f", mixup {event['mixup']}" if event.get("mixup") else ""))
        elif kind == "lr_find":
            self._line(f"stage {event['stage']}: lr_find valley suggestion {event['suggestion']:.2e}")
        elif kind == "epoch":
            if not self.header_done:
                self._line("  ".join(f"{c:>10}" for c in self.COLUMNS))
                self.header_done = True
            m = event["metrics"]
            cells = (event["stage"], event["epoch"], event["train_loss"], event["valid_loss"],
                     m.get("accuracy"), m.get("error_rate"), f"{event['seconds']:.1f}s")
            self._line("  ".join(f"{_fmt(c):>10}" for c in cells))
        elif kind == "note":
            self._line(f"note: {event['message']}")
        elif kind == "result":
            self._line(result_summary(event))
        elif kind == "error":
            self._line(f"error: {event['message']}")


def result_summary(result: dict) -> str:
    """A few lines that say how the run ended: metrics, TTA, best epoch, model file."""
    m = result["metrics"]
    lines = [f"validation: loss {m['valid_loss']:.4f}  accuracy {m['accuracy']:.4f}  error_rate {m['error_rate']:.4f}"]
    if result.get("tta"):
        t = result["tta"]
        lines.append(f"tta (n={t['n']}, use_max={t['use_max']}): accuracy {t['accuracy']:.4f}  error_rate {t['error_rate']:.4f}")
    if result.get("best"):
        b = result["best"]
        lines.append(f"best {b['metric']} {b['value']:.4f} at stage {b['stage']} epoch {b['epoch']} (weights reloaded)")
    if result.get("model_path"):
        lines.append(f"model: {result['model_path']}")
    return "\n".join(lines)
