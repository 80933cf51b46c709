"""The dataset registry: a dataset is registered once (spec + validation report) and referenced by name."""
from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session

from fitboard.app.store.models import Dataset


def register_dataset(session: Session, name: str, spec: dict, report: dict) -> Dataset:
    """Register a dataset under a new name; ValueError if the name is taken."""
    # Checked first for a clear message; the unique index still guards a race between two registrations.
    if session.exec(select(Dataset.id).where(Dataset.name == name)).first() is not None:
        raise ValueError(f"a dataset named {name!r} is already registered")
    dataset = Dataset(name=name, spec=spec, report=report)
    session.add(dataset)
    session.flush()
    return dataset


def get_dataset(session: Session, name: str) -> Dataset | None:
    """The registered dataset with this name, or None."""
    return session.exec(select(Dataset).where(Dataset.name == name)).scalars().first()


def get_dataset_spec(session: Session, name: str) -> dict | None:
    """The inline spec registered under name, or None (the resolver then looks for a folder)."""
    dataset = get_dataset(session, name)
    return None if dataset is None else dict(dataset.spec)


def list_datasets(session: Session) -> list[Dataset]:
    """Every registered dataset, by name."""
    return list(session.exec(select(Dataset).order_by(Dataset.name)).scalars().all())
