"""How the pages say things: learning rates, stages and techniques in words, durations, differences, colors."""
from __future__ import annotations

import json

from fitboard.app.core.variant_words import fmt_lr

# One color per run (or variant), shared by the tables' swatches and the charts so a name can be found in both.
COLORS = ("#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#db2777", "#4b5563",
          "#65a30d")
# Past the palette, a run's line takes the colors again in the next dash style (Plotly's names; compare.js and the
# compare table's swatches, classes d0-d5, agree on the order).
DASHES = ("solid", "dot", "dash", "longdash", "dashdot", "longdashdot")


def describe_stage(idx: int, stage: dict, suggestion: float | None = None) -> str:
    """In words: 'stage 1: 2 epochs at 24 px (presize 32), bs 64, frozen, lr found by LR finder (valley 1.2e-3)'."""
    n, size, presize = stage["epochs"], stage["size"], stage.get("presize") or stage["size"]
    parts = [f"stage {idx + 1}: {n} epoch{'s' if n != 1 else ''} at {size} px"
             + (f" (presize {presize})" if presize != size else ""), f"bs {stage.get('bs', 64)}",
             "frozen" if stage.get("freeze") else "unfrozen"]
    lr = stage.get("lr", "find")
    if lr == "find":
        parts.append("lr found by LR finder" + (f" (valley {fmt_lr(suggestion)})" if suggestion else ""))
    elif isinstance(lr, list):
        parts.append(f"discriminative lr slice({fmt_lr(lr[0])}, {fmt_lr(lr[1])})")
    else:
        parts.append(f"lr {fmt_lr(lr)}")
    if stage.get("mixup"):
        parts.append(f"MixUp α={stage['mixup']:g}")
    return ", ".join(parts)


def heat(matrix: list[list[int]]) -> list[list[tuple[int, float, bool]]]:
    """Confusion cells as (count, share of the actual class, on the diagonal)."""
    # Shading by the row's share makes a rare class's mistakes as visible as a common class's.
    return [[(n, n / max(sum(row), 1), i == j) for j, n in enumerate(row)] for i, row in enumerate(matrix)]


def describe_techniques(spec: dict) -> list[str]:
    """The recipe's global choices in words."""
    norm = {"none": "no normalization", "imagenet": "normalized with ImageNet stats",
            "dataset": "normalized with the dataset's own stats"}[spec.get("normalize", "imagenet")]
    words = [f"{spec.get('arch')} ({'pretrained' if spec.get('pretrained') else 'from scratch'})", norm]
    eps = spec.get("label_smoothing")
    words.append(f"label smoothing eps {eps:g}" if eps else "plain cross entropy")
    if spec.get("keep_best"):
        words.append(f"keeps the best epoch by {spec['keep_best']}")
    tta = spec.get("tta")
    if tta:
        words.append(f"TTA with {tta['n']} augmented passes ({'max' if tta.get('use_max') else 'mean'})")
    words.append(f"{spec.get('precision', 'fp32')} precision, seed {spec.get('seed', 42)}")
    if spec.get("speed", "default") != "default":
        words.append(f"speed mode {spec['speed']} (what it enabled is under Speed)")
    return words


def is_number(v) -> bool:
    """True for a real number (not None, not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def secs(s) -> str:
    """Seconds in words: 42 s, 3 min 5 s, 2 h 10 min."""
    s = abs(s)
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


def show(v) -> str:
    """A recipe value as the recipe file would spell it."""
    return v if isinstance(v, str) else json.dumps(v)


def mean_std(s: dict) -> str:
    """'85.30% ± 1.20' (points), '85.30%' for one seed, '–' for none."""
    if s["mean"] is None:
        return "–"
    return f"{100 * s['mean']:.2f}%" + (f" ± {100 * s['std']:.2f}" if s["std"] is not None else "")


def paired_diff(d: dict | None) -> dict:
    """A seed-paired difference to base: text, its CI (or why there is none) and how it reads."""
    if not d or not d["n"]:
        return {"text": "–", "ci": "", "cls": "muted"}
    if d["low"] is None:
        ci = d.get("note") or "too few seeds for an interval"
    else:
        ci = f"{int(d['level'] * 100)}% CI {100 * d['low']:+.2f} to {100 * d['high']:+.2f}"
        ci += " (clipped)" if d.get("clipped") else ""
    cls = "better" if (d["low"] or 0) > 0 else "worse" if d["high"] is not None and d["high"] < 0 else "noise"
    return {"text": f"{100 * d['mean']:+.2f} pts", "ci": ci, "cls": cls}


def attempts_seconds(attempts: list, finished_at) -> float | None:
    """Seconds spent over every attempt of a run (each from its start to its end; an unclosed last one to the run's
    finish); None until it has finished. run.duration alone is the last attempt's."""
    if finished_at is None or not attempts:
        return None
    total = 0.0
    for a in attempts:
        end = a.ended_at or finished_at
        total += max((end - a.started_at).total_seconds(), 0.0)
    return total


def attempt_ending(outcome: str | None, reason: str | None) -> str:
    """How an attempt ended, its reason once: 'requeued: worker lost', not 'cancelled: cancelled'."""
    outcome, reason = outcome or "", (reason or "").strip()
    if not reason or outcome == "succeeded" or reason == outcome:
        return outcome
    if reason.startswith(outcome + " "):  # "cancelled while no live worker held it" says its outcome already
        return reason
    return f"{outcome}: {reason}" if outcome else reason


def plural(n, noun: str) -> str:
    """'1 configuration', '2 configurations', '0 epochs'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
