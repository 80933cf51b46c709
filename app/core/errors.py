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

    def __init__(self, what: str):
        self.what = what
        super().__init__(f"{what} not found")


class RunNotFound(NotFound):
    """No run has this id."""

    def __init__(self, run_id: int):
        self.run_id = run_id
        super().__init__(f"run {run_id}")


class SweepNotFound(NotFound):
    """No sweep has this id."""

    def __init__(self, sweep_id: int):
        self.sweep_id = sweep_id
        super().__init__(f"sweep {sweep_id}")


class SearchNotFound(NotFound):
    """No search has this id."""

    def __init__(self, search_id: int):
        self.search_id = search_id
        super().__init__(f"search {search_id}")


class DatasetNotFound(NotFound):
    """No registered dataset (or folder, where folders count) has this name."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"dataset {name!r}")


class Conflict(FitboardError):
    """The request is valid but the thing's current state does not allow it."""

    status_code = 409


class RunFinished(Conflict):
    """The run already ended, so it can no longer change state."""

    def __init__(self, run_id: int, status: str):
        self.run_id, self.status = run_id, status
        super().__init__(f"run {run_id} already finished ({status})")


class RunActive(Conflict):
    """Only a failed or cancelled run can be retried."""

    def __init__(self, run_id: int, status: str):
        self.run_id, self.status = run_id, status
        hint = "clone it to train again" if status == "succeeded" else "cancel it first, or wait for it to end"
        super().__init__(f"run {run_id} is {status}: only a failed or cancelled run can be retried; {hint}")


class RunNotSucceeded(Conflict):
    """Only a succeeded run has a model to predict with."""

    def __init__(self, run_id: int, status: str):
        self.run_id, self.status = run_id, status
        super().__init__(f"run {run_id} is {status}: only a succeeded run has a model to predict with")


class RunLive(Conflict):
    """A queued or running run cannot be deleted: it must be cancelled first."""

    def __init__(self, run_id: int, status: str):
        self.run_id, self.status = run_id, status
        super().__init__(f"run {run_id} is {status}: cancel it first, then delete it")


class DatasetExists(Conflict):
    """A dataset is already registered under this name."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"a dataset named {name!r} is already registered")
