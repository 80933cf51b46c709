"""Datasets as the API, the pages and the CLI use them: register after validation, look up, list, the demo data."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from pydantic import ValidationError
from sqlmodel import Session

from fitboard.app.core.datasets import ResolvedDataset, detect_spec, inside, resolve_dataset
from fitboard.app.core.demo_data import write_digits
from fitboard.app.core.errors import DatasetExists, DatasetNotFound, NotFound, RecipeError
from fitboard.app.core.schemas import DatasetSpec
from fitboard.app.store import registry
from fitboard.app.store.models import Dataset

CACHE_SECONDS = 60.0  # resolving re-reads the CSV and decodes images; pages ask again on every load


def is_registered(session: Session, name: str) -> bool:
    """Whether a dataset is registered under this name."""
    return registry.get_dataset(session, name) is not None


def validate(spec: DatasetSpec, data_root: Path, loc_prefix: str = "dataset") -> ResolvedDataset:
    """Resolve and check a dataset spec; RecipeError naming each problem, with field paths under loc_prefix."""
    try:
        return resolve_dataset(spec, data_root)
    except RecipeError as exc:  # the resolver says "dataset.path"; the caller's body may call the field otherwise
        raise RecipeError([{**p, "loc": p["loc"].replace("dataset", loc_prefix, 1)} for p in exc.problems]) from None


def store(session: Session, name: str, spec: DatasetSpec, resolved: ResolvedDataset) -> Dataset:
    """Register a validated dataset with its report."""
    return registry.register_dataset(session, name, spec.model_dump(mode="json"), resolved.report())


def register(session: Session, name: str, spec: DatasetSpec, data_root: Path, loc_prefix: str = "dataset") -> Dataset:
    """Validate a dataset (paths inside the data root) and register it under a new name; DatasetExists when taken."""
    if is_registered(session, name):
        raise DatasetExists(name)
    return store(session, name, spec, validate(spec, data_root, loc_prefix))


def get(session: Session, name: str) -> Dataset:
    """A registered dataset; DatasetNotFound if none has this name."""
    ds = registry.get_dataset(session, name)
    if ds is None:
        raise DatasetNotFound(name)
    return ds


def registered(session: Session) -> list[Dataset]:
    """Every registered dataset, by name."""
    return registry.list_datasets(session)


def ensure_demo_dataset(session: Session, data_root: Path, name: str = "digits") -> str | None:
    """When no dataset is registered, write (if needed) and register the digits demo; returns its name if it did."""
    if registry.list_datasets(session):
        return None
    folder = Path(data_root) / name
    if not (folder / "train.csv").is_file():
        write_digits(folder)
    spec = detect_spec(folder.resolve(), Path(data_root).resolve())
    report = resolve_dataset(spec, data_root).report()
    registry.register_dataset(session, name, spec.model_dump(mode="json"), report)
    return name


# ---- datasets as the pages show them ------------------------------------------------------------------------

@dataclass
class DatasetInfo:
    """A dataset as the pages list it: registered or a bare folder, its report, or why it cannot be used."""

    name: str
    registered: bool
    resolved: ResolvedDataset | None
    error: str | None = None
    image_side: int | None = None  # the shorter side of its first image, to size the presets

    @property
    def report(self) -> dict | None:
        return self.resolved.report() if self.resolved else None


_cache: dict[tuple, tuple[float, DatasetInfo]] = {}


def dataset_info(name: str, data_root: Path, spec: dict | None = None) -> DatasetInfo:
    """Resolve a registered spec or a folder under the data root (cached briefly; errors become text)."""
    root = Path(data_root)
    try:
        stamp = (root / (spec["path"] if spec else name)).stat().st_mtime_ns
    except (OSError, ValueError):
        stamp = 0
    key = (str(root), name, json.dumps(spec, sort_keys=True), stamp)
    hit = _cache.get(key)
    if hit and time.monotonic() - hit[0] < CACHE_SECONDS:
        return hit[1]
    try:
        resolved = resolve_dataset(DatasetSpec.model_validate(spec) if spec else name, root)
        resolved.name = name
        with Image.open(resolved.items[0].path) as im:
            side = min(im.size)
        info = DatasetInfo(name, spec is not None, resolved, image_side=side)
    except (RecipeError, ValidationError, OSError) as exc:
        info = DatasetInfo(name, spec is not None, None, error=str(exc))
    if len(_cache) > 64:
        _cache.clear()
    _cache[key] = (time.monotonic(), info)
    return info


def dataset_infos(session: Session, data_root: Path) -> list[DatasetInfo]:
    """Registered datasets, then folders directly under the data root that are not registered."""
    known = registry.list_datasets(session)
    infos = [dataset_info(d.name, data_root, d.spec) for d in known]
    taken = {d.name for d in known}
    root = Path(data_root)
    folders = (sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
               if root.is_dir() else [])
    return infos + [dataset_info(f, data_root) for f in folders if f not in taken]


def _is_folder(root: Path, name: str) -> bool:
    """Whether name is a folder inside the data root; a name the file system refuses (NUL, too long) is not."""
    try:
        folder = root / name
        return inside(folder, root) and folder.is_dir()
    except (OSError, ValueError):
        return False


def find(session: Session, name: str, data_root: Path) -> DatasetInfo:
    """A registered dataset or a folder under the data root, resolved; DatasetNotFound when neither exists."""
    ds = registry.get_dataset(session, name)
    if ds is None and not _is_folder(Path(data_root), name):
        raise DatasetNotFound(name)
    return dataset_info(name, data_root, ds.spec if ds else None)


def image_file(session: Session, name: str, k: int, data_root: Path) -> tuple[Path, str]:
    """The k-th image file of a validated dataset, confined to the data root, and its media type as PIL reads the
    file (never from the name: an .svg or .html file that a CSV lists is not served); NotFound otherwise."""
    info = find(session, name, data_root)
    if info.resolved is None or not 0 <= k < len(info.resolved.items):
        raise NotFound(f"image {k} of dataset {name!r}")
    path = info.resolved.items[k].path
    if not inside(path, data_root) or not path.is_file():
        raise NotFound(f"image {k} of dataset {name!r}")
    try:
        with Image.open(path) as im:
            media_type = Image.MIME.get(im.format or "")
    except Exception:  # PIL raises many types for a file it does not recognise
        media_type = None
    if media_type is None or not media_type.startswith("image/") or media_type == "image/svg+xml":
        raise NotFound(f"image {k} of dataset {name!r} (not a picture this server serves)")
    return path, media_type
