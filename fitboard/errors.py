"""What the client raises: the API's `detail` as an exception, never a bare HTTP error."""
from __future__ import annotations


class FitboardError(Exception):
    """The server refused a request; `status` is the HTTP status, `detail` what the API said."""

    def __init__(self, status: int, detail, method: str = "", path: str = ""):
        self.status, self.detail, self.method, self.path = status, detail, method, path
        super().__init__(f"{method} {path}: {status}: {self._words(detail)}".strip())

    @staticmethod
    def _words(detail) -> str:
        if isinstance(detail, list):  # 422: one problem per field
            return "; ".join(f"{p.get('loc')}: {p.get('msg')}" if p.get("loc") else str(p.get("msg"))
                             for p in detail if isinstance(p, dict))
        return str(detail)


class ValidationError(FitboardError, ValueError):
    """422: `problems` lists {'loc', 'msg'}, each naming a field."""

    @property
    def problems(self) -> list[dict]:
        return self.detail if isinstance(self.detail, list) else [{"loc": "", "msg": str(self.detail)}]

    @property
    def fields(self) -> list[str]:
        """The field paths the server named (stages[0].lr, ...)."""
        return [p.get("loc", "") for p in self.problems]


class NotFound(FitboardError, LookupError):
    """404: no such run, sweep or file."""


class Conflict(FitboardError):
    """409: the run's state does not allow it (already finished, still running, ...)."""


class Unreachable(FitboardError, ConnectionError):
    """The server did not answer (after the transport's retries)."""


def error_for(status: int, detail, method: str, path: str) -> FitboardError:
    """The exception class for an HTTP status."""
    cls = {422: ValidationError, 404: NotFound, 409: Conflict}.get(status, FitboardError)
    return cls(status, detail, method, path)


class RecipeFileError(ValueError):
    """A recipe file (or text) that cannot be read as a mapping of fields; `loc` names the file, `msg` what is
    wrong. Raised before anything is sent."""

    def __init__(self, loc: str, msg: str):
        self.loc, self.msg = loc, msg
        super().__init__(f"{loc}: {msg}")
