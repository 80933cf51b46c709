"""A recipe as {field path: leaf value} (arch, stages[1].lr, tta.n): the one flattener the server's compare and the
client's tables share. It imports nothing, so the light client and the server both load it."""
from __future__ import annotations


def flatten(value, prefix: str = "") -> dict:
    """A recipe as {field path: leaf}: arch, stages[1].lr, tta.n (a list of numbers, lr: [low, high], stays one
    leaf; a list of objects, the stages, is numbered)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: value}
