"""Write scikit-learn's digits as JPEG files in the Cassava layout: a real, learnable demo dataset."""
from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from PIL import Image

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def write_digits(target: Path, size: int = 32, valid_pct: float = 0.2, limit: int | None = None,
                 seed: int = 0) -> Path:
    """Write digits as train_images/*.jpg, train.csv (image_id,label,is_val) and a label-name map."""
    from sklearn.datasets import load_digits  # ships with scikit-learn, no download

    digits = load_digits()
    order = list(range(len(digits.images)))
    random.Random(seed).shuffle(order)
    order = order[:limit] if limit else order
    n_valid = round(len(order) * valid_pct)
    images = Path(target) / "train_images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for rank, idx in enumerate(order):
        # 8x8 values 0..16 -> 0..255, upscaled so a small resnet has pixels to work with.
        pixels = (digits.images[idx] * (255 / 16)).astype("uint8")
        img = Image.fromarray(pixels, mode="L").resize((size, size), Image.BILINEAR).convert("RGB")
        image_id = f"{idx:04d}.jpg"
        img.save(images / image_id, quality=95)
        rows.append((image_id, int(digits.target[idx]), rank < n_valid))
    rows.sort()
    with (Path(target) / "train.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id", "label", "is_val"])
        writer.writerows((i, lbl, "True" if v else "False") for i, lbl, v in rows)
    label_map = {str(i): name for i, name in enumerate(DIGIT_NAMES)}
    (Path(target) / "label_num_to_disease_map.json").write_text(json.dumps(label_map, indent=1))
    return Path(target)


def ensure_demo_dataset(session, data_root: Path, name: str = "digits") -> str | None:
    """When no dataset is registered, write (if needed) and register the digits demo; returns its name if it did."""
    from app.datasets import detect_spec, resolve_dataset
    from app.registry import list_datasets, register_dataset

    if list_datasets(session):
        return None
    folder = Path(data_root) / name
    if not (folder / "train.csv").is_file():
        write_digits(folder)
    spec = detect_spec(folder.resolve(), Path(data_root).resolve())
    report = resolve_dataset(spec, data_root).report()
    register_dataset(session, name, spec.model_dump(mode="json"), report)
    return name
