"""Write scikit-learn's digits as JPEG files in the Cassava layout: a real, learnable demo dataset.

The 57 KB digits table ships inside fitboard (app/core/data), so the web-only install writes the demo without
scikit-learn.
"""
from __future__ import annotations

import csv
import gzip
import json
import random
from pathlib import Path

from PIL import Image

from fitboard.app.core.resources import digits_csv

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SIDE = 8  # the table's images are 8x8 with values 0..16


def load_digits() -> list[tuple[bytes, int]]:
    """Every digit as (8x8 grey pixels scaled to 0..255, label), in the table's order."""
    rows = []
    with gzip.open(digits_csv(), "rt") as fh:
        for line in csv.reader(fh):
            *pixels, label = (float(v) for v in line)
            rows.append((bytes(int(v * (255 / 16)) for v in pixels), int(label)))
    return rows


def write_digits(target: Path, size: int = 32, valid_pct: float = 0.2, limit: int | None = None,
                 seed: int = 0) -> Path:
    """Write digits as train_images/*.jpg, train.csv (image_id,label,is_val) and a label-name map."""
    digits = load_digits()
    order = list(range(len(digits)))
    random.Random(seed).shuffle(order)
    order = order[:limit] if limit else order
    n_valid = round(len(order) * valid_pct)
    images = Path(target) / "train_images"
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    for rank, idx in enumerate(order):
        pixels, label = digits[idx]
        # Upscaled so a small resnet has pixels to work with.
        img = Image.frombytes("L", (SIDE, SIDE), pixels).resize((size, size), Image.BILINEAR).convert("RGB")
        image_id = f"{idx:04d}.jpg"
        img.save(images / image_id, quality=95)
        rows.append((image_id, label, rank < n_valid))
    rows.sort()
    with (Path(target) / "train.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id", "label", "is_val"])
        writer.writerows((i, lbl, "True" if v else "False") for i, lbl, v in rows)
    label_map = {str(i): name for i, name in enumerate(DIGIT_NAMES)}
    (Path(target) / "label_num_to_disease_map.json").write_text(json.dumps(label_map, indent=1))
    return Path(target)
