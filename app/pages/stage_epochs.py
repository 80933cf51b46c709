"""Epochs per stage typed on a form that starts many runs from one (Ablate, Search): a long recipe tried on a short
budget, blank keeping the run's own."""
from __future__ import annotations

from fitboard.app.core.schemas import MAX_EPOCHS


def run_epochs(spec: dict) -> list[str]:
    """The run's epochs per stage, as the form's boxes first show them."""
    return [str(s.get("epochs", "")) for s in (spec or {}).get("stages", [])]


def stage_epochs(data, stages: list[dict]) -> tuple[list[str], list[int] | None, list[str]]:
    """The per-stage epochs typed on the form (blank keeps the run's): as typed, as numbers, and problems."""
    typed = [(data.get(f"epochs-{i}") or "").strip() or str(s.get("epochs", "")) for i, s in enumerate(stages)]
    values, errors = [], []
    for i, text in enumerate(typed):
        n = int(text) if text.isdecimal() and len(text) <= 5 else None
        if n is None or not 1 <= n <= MAX_EPOCHS:
            errors.append(f"stage {i + 1} epochs: give a whole number from 1 to {MAX_EPOCHS}; got {text[:20]!r}.")
        values.append(n)
    return typed, (values if not errors else None), errors


def with_epochs(spec: dict, epochs: list[int] | None) -> list | None:
    """The run's stages with the epochs typed on the form."""
    stages = spec.get("stages")
    return [{**s, "epochs": e} for s, e in zip(stages, epochs, strict=True)] if stages and epochs else stages
