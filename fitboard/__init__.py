"""fitboard's Python API: `fitboard.Client` for notebooks and scripts (HTTP only, no torch), and
`fitboard.fastai.FitboardCallback` (imported on its own: it needs fastai)."""
from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["Client", "Run", "FitboardError", "ValidationError", "NotFound", "Conflict", "Unreachable"]

if TYPE_CHECKING:
    from fitboard.client import Client
    from fitboard.errors import Conflict, FitboardError, NotFound, Unreachable, ValidationError
    from fitboard.runs import Run


def __getattr__(name: str):
    """Import on first use, so `import fitboard` costs nothing until a name is needed."""
    if name == "Client":
        from fitboard.client import Client

        return Client
    if name == "Run":
        from fitboard.runs import Run

        return Run
    if name in ("FitboardError", "ValidationError", "NotFound", "Conflict", "Unreachable"):
        from fitboard import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'fitboard' has no attribute {name!r}")
