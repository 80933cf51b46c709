"""Domain errors: raised by the store and the services, mapped to HTTP statuses in one place (app.web.errors)."""
from __future__ import annotations


class FitboardError(Exception):
    """Base of the errors a caller can act on; each subclass names its HTTP status."""

    status_code = 400


class RecipeError(FitboardError, ValueError):
    """A recipe, dataset or form problem found before anything is stored; each problem names its field or file."""

    status_code = 422

    def __init__(self, problems: list[dict]):
        self.problems = problems
        super().__init__("\n".join(f"{p['loc']}: {p['msg']}" if p.get("loc") else p["msg"] for p in problems))

    @classmethod
    def one(cls, loc: str, msg: str) -> "RecipeError":
        """A RecipeError holding a single problem."""
        return cls([{"loc": loc, "msg": msg}])


class StorageUnavailable(FitboardError, RuntimeError):
    """A store the answer needs (the artifact store) cannot be reached now; worth retrying later."""

    status_code = 503


class TooLarge(FitboardError, ValueError):
    """The request carries more than its bound (the message says the bound)."""

    status_code = 413


class NotFound(FitboardError, LookupError):
    """The thing asked for does not exist."""

    status_code = 404
    kind = ""  # a subclass names its kind (class RunNotFound(NotFound, kind="run")) and takes the id alone

    def __init_subclass__(cls, kind: str = "", **kwargs):
        super().__init_subclass__(**kwargs)
        cls.kind = kind or cls.kind

    def __init__(self, what):
        self.what = f"{self.kind} {what}" if self.kind else what
        super().__init__(f"{self.what} not found")


class RunNotFound(NotFound, kind="run"):
    """No run has this id."""


class SweepNotFound(NotFound, kind="sweep"):
    """No sweep has this id."""


class SearchNotFound(NotFound, kind="search"):
    """No search has this id."""


class DatasetNotFound(NotFound):
    """No registered dataset (or folder, where folders count) has this name."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"dataset {name!r}")


class Conflict(FitboardError):
    """The request is valid but the thing's current state does not allow it."""

    status_code = 409


class RunStateConflict(Conflict):
    """A run's status does not allow what was asked; each subclass says why in its message."""

    message = "run {run_id} is {status}"

    def __init__(self, run_id: int, status: str):
        self.run_id, self.status = run_id, status
        super().__init__(self.message.format(run_id=run_id, status=status, hint=self.hint(status)))

    def hint(self, status: str) -> str:
        """What the user can do instead (a subclass's message may use it as {hint})."""
        return ""


class RunFinished(RunStateConflict):
    """The run already ended, so it can no longer change state."""

    message = "run {run_id} already finished ({status})"


class RunActive(RunStateConflict):
    """Only a failed or cancelled run can be retried."""

    message = "run {run_id} is {status}: only a failed or cancelled run can be retried; {hint}"

    def hint(self, status: str) -> str:
        return "clone it to train again" if status == "succeeded" else "cancel it first, or wait for it to end"


class RunNotSucceeded(RunStateConflict):
    """Only a succeeded run has a model to predict with."""

    message = "run {run_id} is {status}: only a succeeded run has a model to predict with"


class RunLive(RunStateConflict):
    """A queued or running run cannot be deleted: it must be cancelled first."""

    message = "run {run_id} is {status}: cancel it first, then delete it"


class DatasetExists(Conflict):
    """A dataset is already registered under this name."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"a dataset named {name!r} is already registered")
