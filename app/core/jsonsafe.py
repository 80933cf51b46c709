"""JSON without NaN or infinities: a diverged loss becomes null, which every JSON reader and Postgres accept."""
from __future__ import annotations

import math


def json_safe(value):
    """Replace NaN and infinities by None, recursively through dicts, lists and tuples."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
