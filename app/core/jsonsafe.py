"""JSON without NaN or infinities: a diverged loss becomes null, which every JSON reader and Postgres accept."""
from __future__ import annotations

import math


def finite_float(v) -> float | None:
    """A number as a float, with NaN/inf (a diverged loss) as None so both backends store the same."""
    return None if v is None or not math.isfinite(float(v)) else float(v)


def json_safe(value):
    """Replace NaN and infinities by None, recursively through dicts, lists and tuples."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
