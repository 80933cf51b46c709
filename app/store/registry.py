"""The dataset registry: a dataset is registered once (spec + validation report) and referenced by name.

Names are unique per project: two projects may each have a dataset called `cassava`, and a recipe's `dataset:`
means the one of the run's project."""
from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session

from fitboard.app.store.models import DEFAULT_PROJECT_ID, Dataset
from fitboard.app.store.ownership import scoped_project


def _project(session: Session, project_id: int | None) -> int:
    """The project a lookup is about: the one given, else the session's (a request's), else `default`."""
    return project_id or scoped_project(session) or DEFAULT_PROJECT_ID


def register_dataset(session: Session, name: str, spec: dict, report: dict, project_id: int | None = None) -> Dataset:
    """Register a dataset under a name new to its project; ValueError if the project has one by that name."""
    pid = _project(session, project_id)
    # Checked first for a clear message; the unique index still guards a race between two registrations.
    if get_dataset(session, name, pid) is not None:
        raise ValueError(f"a dataset named {name!r} is already registered")
    dataset = Dataset(name=name, spec=spec, report=report, project_id=pid)
    session.add(dataset)
    session.flush()
    return dataset


def get_dataset(session: Session, name: str, project_id: int | None = None) -> Dataset | None:
    """The dataset registered under this name in the project (see _project), or None."""
    query = select(Dataset).where(Dataset.name == name, Dataset.project_id == _project(session, project_id))
    return session.exec(query).scalars().first()


def get_dataset_spec(session: Session, name: str, project_id: int | None = None) -> dict | None:
    """The inline spec registered under name in the project, or None (the resolver then looks for a folder)."""
    dataset = get_dataset(session, name, project_id)
    return None if dataset is None else dict(dataset.spec)


def list_datasets(session: Session) -> list[Dataset]:
    """Every registered dataset, by name."""
    return list(session.exec(select(Dataset).order_by(Dataset.name)).scalars().all())
