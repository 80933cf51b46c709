"""Runs as the API, the pages and the CLI use them: submit (validate, store, commit, publish), read, list, cancel,
edit and delete."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from sqlmodel import Session

from fitboard.app.core.artifacts import ArtifactStore, store_for
from fitboard.app.core.datasets import ResolvedDataset, resolve_dataset
from fitboard.app.core.errors import Conflict, NotFound
from fitboard.app.core.fairshare import check_priority
from fitboard.app.core.run_meta import RunPatch
from fitboard.app.core.schemas import DatasetSpec, RunSpec, parse_spec
from fitboard.app.core.settings import Settings
from fitboard.app.services import dispatch
from fitboard.app.services.queue import DEFAULT_QUEUE, Publisher
from fitboard.app.services.recovery import publish_committed
from fitboard.app.store import runs as store
from fitboard.app.store.attempts import list_attempts
from fitboard.app.store.models import EpochRow, LRFind, Run, RunAttempt
from fitboard.app.store.recovery import retry_run
from fitboard.app.store.registry import get_dataset_spec
from fitboard.app.store.run_list import RunsPage
from fitboard.app.store.tracked import TRACKED

log = logging.getLogger(__name__)

# The runs list's archived filter: hidden by default, shown with the others, or shown alone.
ARCHIVED = {"hide": False, "show": None, "only": True}


def registry_for(session: Session, project_id: int | None = None):
    """A dataset lookup by registered name in a project (default: the session's), for resolve_dataset."""
    def lookup(name: str) -> DatasetSpec | None:
        spec = get_dataset_spec(session, name, project_id)
        return DatasetSpec.model_validate(spec) if spec else None
    return lookup


def validate_recipe(session: Session, data: dict | RunSpec, data_root: Path) -> tuple[RunSpec, ResolvedDataset]:
    """The recipe and its dataset, validated; RecipeError names every problem."""
    spec = data if isinstance(data, RunSpec) else parse_spec(data)
    return spec, resolve_dataset(spec.dataset, data_root, seed=spec.seed, registry=registry_for(session))


def store_run(session: Session, data: dict | RunSpec, data_root: Path, queue: str = DEFAULT_QUEUE,
              priority: str = "normal") -> Run:
    """Validate and add a queued run (not yet committed); nothing is stored when the recipe or dataset is refused."""
    spec, dataset = validate_recipe(session, data, data_root)
    run = store.create_run(session, spec.model_dump(mode="json"), name=spec.name, dataset=dataset.name,
                           techniques=spec.techniques(), queue=queue)
    run.priority = check_priority(priority)
    return run


def split_priority(data: dict | RunSpec) -> tuple[dict | RunSpec, str]:
    """A submitted body's recipe and its priority (a field beside the recipe's; default normal)."""
    if not isinstance(data, dict) or "priority" not in data:
        return data, "normal"
    data = dict(data)
    return data, check_priority(data.pop("priority"))


def submit(session: Session, publisher: Publisher, data: dict | RunSpec, data_root: Path) -> tuple[Run, str | None]:
    """Validate, store, commit and dispatch one run (a `priority` may stand beside the recipe's fields); the note
    says when the broker could not take it yet."""
    data, priority = split_priority(data)
    run = store_run(session, data, data_root, publisher.queue, priority)
    return run, publish_committed(session, publisher, [run])


def get(session: Session, run_id: int) -> Run:
    """One run; RunNotFound if none."""
    return store.get_run(session, run_id)


def with_recipe(session: Session, run_id: int) -> Run:
    """A run whose recipe can train again (the base of an ablation or a search); Conflict for a tracked run."""
    run = store.get_run(session, run_id)
    if run.kind == TRACKED:  # its spec is what the notebook told: no recipe (the forms failed on its `tracked` field)
        raise Conflict(f"run {run_id} was trained outside fitboard (tracked): there is no recipe to ablate or search "
                       "around; clone it, and ablate or search around the clone once it has run")
    return run


def page(session: Session, **filters) -> RunsPage:
    """A page of runs matching the filters, how many match (exact up to COUNT_LIMIT) and the cursors around it."""
    return store.runs_page(session, **filters)


def dataset_names(session: Session) -> list[str]:
    """Every dataset name some run used (for the runs list's filter)."""
    return store.dataset_names(session)


def epochs(session: Session, run_id: int) -> list[EpochRow]:
    """A run's epoch table; RunNotFound for an unknown run."""
    store.get_run(session, run_id)
    return store.list_epochs(session, run_id)


def lr_finds(session: Session, run_id: int) -> list[LRFind]:
    """A run's LR-finder curves; RunNotFound for an unknown run."""
    store.get_run(session, run_id)
    return store.list_lr_finds(session, run_id)


def artifacts(session: Session, run_id: int) -> dict[str, int | None]:
    """A run's stored files: kind -> size in bytes."""
    return store.list_artifacts(session, run_id)


def model_file(session: Session, files: ArtifactStore, run_id: int) -> Path | tuple[Iterator[bytes], int]:
    """The run's exported model: a local file (a directory store) or a stream of chunks and its size (a bucket);
    NotFound when it has none (not finished, failed, or the file is gone from the store)."""
    # a tracked run's model is the file its notebook uploaded (served back, never loaded here)
    kind = "uploaded_model" if store.get_run(session, run_id).kind == "tracked" else "model"
    if kind in store.list_artifacts(session, run_id):
        path = files.local_path(run_id, kind)
        opened = path or files.open(run_id, kind)
        if opened:
            return opened
    raise NotFound(f"an exported model for run {run_id}")


def cancel(session: Session, run_id: int, orphaned_after: float | None = None) -> str:
    """Cancel a queued run now or ask a running one to stop, committed; the new status. RunFinished if it ended.
    A running run whose worker is gone (silent orphaned_after seconds) is cancelled at once."""
    if store.get_run(session, run_id).kind == "tracked":  # no worker to notice a request: it ends now
        status = str(store.mark_cancelled(session, run_id).status)
    else:
        status = store.request_cancel(session, run_id, orphaned_after)
    session.commit()
    return status


def retry(session: Session, publisher: Publisher, run_id: int, from_checkpoint: bool) -> tuple[Run, str | None]:
    """Queue a failed or cancelled run again under its id (from its checkpoint or from scratch), committed and
    published; RunActive for a queued, running or succeeded run."""
    run = retry_run(session, run_id, from_checkpoint)
    return run, publish_committed(session, publisher, [run])


def attempts(session: Session, run_id: int) -> list[RunAttempt]:
    """A run's attempts, first to last."""
    return list_attempts(session, run_id)


def edit(session: Session, run_id: int, patch: RunPatch) -> Run:
    """Rename, annotate, tag, archive or unarchive a run, committed; the run afterwards."""
    run = store.update_run(session, run_id, patch.changes())
    session.commit()
    if patch.priority is not None:
        dispatch.lines.clear()  # its queue's line moved
    return run


def set_priority(session: Session, run_id: int, priority: str) -> Run:
    """Change a run's priority (the caller was allowed: app.web.access.may_set_priority), committed; the run."""
    run = store.update_run(session, run_id, {"priority": check_priority(priority)})
    session.commit()
    dispatch.lines.clear()  # its queue's line moved
    return run


def _delete_files(settings: Settings, run_id: int) -> None:
    """Remove a run's files from the artifact store. After the rows are gone: a store that fails now (an unreachable
    bucket) leaves orphan files, said in the log, never a run whose files are missing."""
    try:
        store_for(settings).delete_run(run_id)
    except Exception as exc:
        log.warning("run %s deleted; its files in %s could not be removed: %s", run_id, settings.artifact_location, exc)


def delete(session: Session, settings: Settings, run_id: int) -> None:
    """Delete a finished run and its rows, committed, then its files; RunLive for a queued or running run."""
    store.delete_run(session, run_id)
    session.commit()
    _delete_files(settings, run_id)
