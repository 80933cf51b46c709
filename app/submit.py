"""Submitting a recipe: validate it and its dataset, then store a queued run (the caller enqueues after commit)."""
from __future__ import annotations

from pathlib import Path

from sqlmodel import Session

from app.datasets import ResolvedDataset, resolve_dataset
from app.models import Run
from app.registry import get_dataset_spec
from app.runs import create_run
from app.schemas import DatasetSpec, RunSpec, parse_spec


def registry_for(session: Session):
    """A dataset lookup by registered name, for resolve_dataset."""
    def lookup(name: str) -> DatasetSpec | None:
        spec = get_dataset_spec(session, name)
        return DatasetSpec.model_validate(spec) if spec else None
    return lookup


def validate_recipe(session: Session, data: dict | RunSpec, data_root: Path) -> tuple[RunSpec, ResolvedDataset]:
    """The recipe and its dataset, validated; RecipeError names every problem."""
    spec = data if isinstance(data, RunSpec) else parse_spec(data)
    return spec, resolve_dataset(spec.dataset, data_root, seed=spec.seed, registry=registry_for(session))


def submit_run(session: Session, data: dict | RunSpec, data_root: Path) -> Run:
    """Validate and store a queued run; nothing is stored when the recipe or its dataset is refused."""
    spec, dataset = validate_recipe(session, data, data_root)
    return create_run(session, spec.model_dump(mode="json"), name=spec.name, dataset=dataset.name,
                      techniques=spec.techniques())
