"""Resolve a recipe's dataset (name, folder or inline spec) and validate it before any training."""
from __future__ import annotations

import csv
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from PIL import Image

from fitboard.app.core.errors import RecipeError
from fitboard.app.core.schemas import DatasetSpec

IMAGE_COLUMNS = ("image_id", "image", "filename", "file", "fname", "path")
LABEL_COLUMNS = ("label", "labels", "class", "target", "category")
VALID_COLUMNS = ("is_val", "is_valid", "valid", "validation")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
TRUE_WORDS, FALSE_WORDS = {"true", "1", "yes", "t", "y"}, {"false", "0", "no", "f", "n", ""}
DECODE_SAMPLE = 32
SHOW_MISSING = 5

Registry = Callable[[str], "DatasetSpec | None"]


@dataclass
class Item:
    """One labelled image: its id as the dataset names it, its file, its class name and split."""

    image_id: str
    path: Path
    label: str
    is_valid: bool


@dataclass
class ResolvedDataset:
    """A validated dataset: every image with its class and split, and a report on it."""

    name: str
    layout: str
    root: Path
    items: list[Item]
    classes: list[str]
    warnings: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class and split."""
        out = {c: {"train": 0, "valid": 0} for c in self.classes}
        for it in self.items:
            out[it.label]["valid" if it.is_valid else "train"] += 1
        return out

    def report(self) -> dict:
        """A JSON-able summary: layout, classes, counts per class and split, warnings."""
        n_valid = sum(it.is_valid for it in self.items)
        return {"name": self.name, "layout": self.layout, "root": str(self.root), "classes": self.classes,
                "n_train": len(self.items) - n_valid, "n_valid": n_valid,
                "counts": self.counts(), "warnings": self.warnings}


def inside(path: Path, root: Path) -> bool:
    """True when path, with symlinks followed, lies inside root."""
    return path.resolve().is_relative_to(root.resolve())


def _under_root(rel: str, root: Path, loc: str, base: Path | None = None) -> Path:
    """Resolve a user-given path (relative to base, default the data root), refusing anything that leaves the root."""
    p = Path(rel)  # never expanduser: '~name' is a folder name here, not another user's home
    p = p if p.is_absolute() else (base or root) / p
    if not inside(p, root):
        raise RecipeError.one(loc, f"path {rel!r} is outside the data root {root}")
    return p.resolve()


def _pick(columns: list[str], wanted: str | None, candidates: tuple, what: str, csv_path: Path,
          loc: str, required: bool = True) -> str | None:
    """Choose a CSV column: the one asked for, else the first conventional name present."""
    if wanted is not None:
        if wanted not in columns:
            raise RecipeError.one(loc, f"{csv_path.name} has no column {wanted!r} ({what}); "
                                       f"columns: {', '.join(columns)}")
        return wanted
    for c in candidates:
        if c in columns:
            return c
    if required:
        raise RecipeError.one(str(csv_path), f"no {what} column found; expected one of {', '.join(candidates)} "
                                             f"(columns: {', '.join(columns)})")
    return None


def _parse_bool(value: str, csv_path: Path, row: int, col: str) -> bool:
    """Read a validation flag; anything but a boolean word names the row."""
    v = value.strip().lower()
    if v in TRUE_WORDS:
        return True
    if v in FALSE_WORDS:
        return False
    raise RecipeError.one(str(csv_path), f"row {row}: column {col!r} must be true/false, got {value!r}")


def _read_label_map(label_map, root: Path, base: Path) -> dict[str, str] | None:
    """Load a label-name map (Cassava's label_num_to_disease_map.json) from a dict or a JSON file."""
    if label_map is None or isinstance(label_map, dict):
        return label_map
    path = _under_root(label_map, root, "dataset.label_map", base)
    if not path.is_file():
        raise RecipeError.one("dataset.label_map", f"label map file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RecipeError.one(str(path), f"label map is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RecipeError.one(str(path), "label map must be a JSON object of label -> name")
    return {str(k): str(v) for k, v in data.items()}


def _csv_items(spec: DatasetSpec, root: Path, seed: int) -> tuple[list[Item], list[str]]:
    """Read the csv layout: one row per image with its label and (optionally) validation flag; and the label map's
    class names in its own order (empty without a map)."""
    base = _under_root(spec.path, root, "dataset.path")
    csv_path = _under_root(spec.csv or "train.csv", root, "dataset.csv", base)
    if not csv_path.is_file():
        raise RecipeError.one("dataset.csv", f"CSV file not found: {csv_path}")
    images = _under_root(spec.images or ".", root, "dataset.images", base)
    if not images.is_dir():
        raise RecipeError.one("dataset.images", f"image folder not found: {images}")
    with csv_path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = list(reader.fieldnames or [])
        image_col = _pick(columns, spec.image_col, IMAGE_COLUMNS, "image", csv_path, "dataset.image_col")
        label_col = _pick(columns, spec.label_col, LABEL_COLUMNS, "label", csv_path, "dataset.label_col")
        valid_col = _pick(columns, spec.valid_col, VALID_COLUMNS, "validation", csv_path, "dataset.valid_col",
                          required=False)
        rows = list(reader)
    if not rows:
        raise RecipeError.one(str(csv_path), "the CSV has no rows")
    names = _read_label_map(spec.label_map, root, base)
    items = []
    for i, row in enumerate(rows, start=2):  # row 1 is the header
        image_id, label = (row.get(image_col) or "").strip(), (row.get(label_col) or "").strip()
        if not image_id or not label:
            raise RecipeError.one(str(csv_path), f"row {i}: empty {image_col if not image_id else label_col!r}")
        path = images / image_id
        if not inside(path, root):
            raise RecipeError.one(str(csv_path), f"row {i}: image {image_id!r} is outside the data root")
        is_valid = _parse_bool(row[valid_col], csv_path, i, valid_col) if valid_col else False
        items.append(Item(image_id, path, names.get(label, label) if names else label, is_valid))
    if not valid_col:
        _random_split(items, spec.valid_pct, seed)
    return items, _map_order(names)


def _numeric(value: str) -> float | None:
    """A label or label-map key as a number, or None when it is not one."""
    try:
        return float(value)
    except ValueError:
        return None


def _map_order(names: dict[str, str] | None) -> list[str]:
    """A label map's class names in the order of its keys (numerically when every key is a number)."""
    if not names:
        return []
    keys = list(names)
    if all(_numeric(k) is not None for k in keys):
        keys.sort(key=_numeric)
    return list(dict.fromkeys(names[k] for k in keys))


def class_order(labels: set[str], preferred: list[str]) -> list[str]:
    """The dataset's own class order: the label map's order, else numeric label order, else alphabetical; labels
    the map does not name follow in that same fallback order."""
    ordered = [c for c in preferred if c in labels]
    rest = labels - set(ordered)
    if all(_numeric(c) is not None for c in rest):
        return ordered + sorted(rest, key=lambda c: (_numeric(c), c))
    return ordered + sorted(rest)


def _random_split(items: list[Item], valid_pct: float, seed: int) -> None:
    """Mark valid_pct of the items for validation, reproducibly for a seed."""
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    for idx in order[: max(1, round(len(items) * valid_pct))]:
        items[idx].is_valid = True


def _folder_items(spec: DatasetSpec, root: Path) -> list[Item]:
    """Read the folder layout: train/<class>/* and val/<class>/* (valid/ also accepted)."""
    base = _under_root(spec.path, root, "dataset.path")
    train = base / "train"
    val = next((base / v for v in ("val", "valid") if (base / v).is_dir()), None)
    if not train.is_dir() or val is None:
        raise RecipeError.one("dataset.path", f"{base} must hold train/<class>/ and val/<class>/ folders")
    items = []
    for split_dir, is_valid in ((train, False), (val, True)):
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            for f in sorted(class_dir.iterdir()):
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    if not inside(f, root):
                        raise RecipeError.one(str(f), "image is a link that leaves the data root")
                    items.append(Item(str(f.relative_to(base)), f, class_dir.name, is_valid))
    if not items:
        raise RecipeError.one("dataset.path", f"no images found under {train} and {val}")
    return items


def detect_spec(folder: Path, root: Path) -> DatasetSpec:
    """Work out the layout of a dataset folder: train/val class folders, or a CSV beside an image folder."""
    rel = str(folder.relative_to(root))
    if (folder / "train").is_dir() and any((folder / v).is_dir() for v in ("val", "valid")):
        return DatasetSpec(layout="folder", path=rel)
    csvs = sorted(folder.glob("*.csv"))
    if not csvs:
        raise RecipeError.one("dataset", f"cannot detect the layout of {folder}: "
                                         "no CSV file and no train/ + val/ folders")
    chosen = next((c for c in csvs if c.name == "train.csv"), csvs[0] if len(csvs) == 1 else None)
    if chosen is None:
        raise RecipeError.one("dataset", f"{folder} holds several CSV files ({', '.join(c.name for c in csvs)}); "
                                         "describe the dataset inline with 'csv'")
    subdirs = [d for d in sorted(folder.iterdir()) if d.is_dir()]
    images = next((d for d in subdirs if d.name in ("train_images", "images")),
                  subdirs[0] if len(subdirs) == 1 else folder)
    maps = sorted(folder.glob("*.json"))
    label_map = next((m for m in maps if m.name == "label_num_to_disease_map.json"),
                     maps[0] if len(maps) == 1 else None)
    return DatasetSpec(layout="csv", path=rel, csv=chosen.name, images=str(images.relative_to(folder)),
                       label_map=label_map.name if label_map else None)


def _spec_for(ref: str | DatasetSpec, root: Path, registry: Registry | None) -> tuple[str, DatasetSpec]:
    """Turn a dataset reference into (display name, inline spec), looking in the registry first."""
    if isinstance(ref, DatasetSpec):
        base = _under_root(ref.path, root, "dataset.path")
        if not base.is_dir():
            raise RecipeError.one("dataset.path", f"dataset folder not found: {base}")
        return ref.path, ref
    if registry is not None and (found := registry(ref)) is not None:
        return ref, found
    folder = root / ref
    if not inside(folder, root):
        raise RecipeError.one("dataset", f"dataset {ref!r} is outside the data root {root}")
    if not folder.is_dir():
        raise RecipeError.one("dataset", f"unknown dataset {ref!r}: not registered and no folder {folder}")
    return ref, detect_spec(folder.resolve(), root)


def _check_items(items: list[Item], name: str) -> list[str]:
    """Check files, decodability, classes and splits; raise on problems, return warnings."""
    missing = [it.image_id for it in items if not it.path.is_file()]
    if missing:
        shown = ", ".join(missing[:SHOW_MISSING])
        raise RecipeError.one(name, f"{len(missing)} of {len(items)} image files are missing (first: {shown})")
    sample = [items[0]] + random.Random(0).sample(items, min(DECODE_SAMPLE, len(items)))
    for it in sample:
        try:
            with Image.open(it.path) as im:
                im.verify()
        except Exception as exc:  # PIL raises many types for a broken file
            raise RecipeError.one(str(it.path), f"image cannot be decoded: {exc}") from None
    train = Counter(it.label for it in items if not it.is_valid)
    valid = Counter(it.label for it in items if it.is_valid)
    if len(train) < 2:
        raise RecipeError.one(name, f"the training split needs at least two classes; found {sorted(train) or 'none'}")
    if not valid:
        raise RecipeError.one(name, "the validation split is empty")
    unseen = sorted(set(valid) - set(train))
    if unseen:
        raise RecipeError.one(name, f"validation labels never seen in training: {', '.join(unseen[:SHOW_MISSING])}")
    return [f"class {c!r} has no validation images" for c in sorted(set(train) - set(valid))]


def resolve_dataset(ref: str | DatasetSpec, data_root: Path, seed: int = 42,
                    registry: Registry | None = None) -> ResolvedDataset:
    """Resolve and validate a recipe's dataset; every failure is a RecipeError naming the file, column or row."""
    root = Path(data_root).resolve()
    try:
        name, spec = _spec_for(ref, root, registry)
        items, preferred = _csv_items(spec, root, seed) if spec.layout == "csv" else (_folder_items(spec, root), [])
        warnings = _check_items(items, name)
    except RecipeError:
        raise
    except (OSError, ValueError) as exc:  # a name the file system refuses (too long, NUL in a CSV row, ...)
        raise RecipeError.one("dataset", f"cannot read the dataset: {exc}") from None
    classes = class_order({it.label for it in items}, preferred)
    return ResolvedDataset(name=name, layout=spec.layout, root=_under_root(spec.path, root, "dataset.path"),
                           items=items, classes=classes, warnings=warnings)
