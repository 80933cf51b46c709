"""Dataset resolution and validation: every problem is found before training and names its file, column or row."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from fitboard.app.core.datasets import class_order, resolve_dataset
from fitboard.app.core.demo_data import DIGIT_NAMES, write_digits
from fitboard.app.core.schemas import DatasetSpec, RecipeError


@pytest.fixture
def root(tmp_path) -> Path:
    """A fresh data root with a 120-image digits dataset to break."""
    write_digits(tmp_path / "digits", limit=120)
    return tmp_path


def rewrite_csv(path: Path, edit) -> None:
    """Apply edit(rows) to a CSV's rows (header kept as the first row)."""
    rows = list(csv.reader(path.open()))
    rows = edit(rows)
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)


def refused(ref, root, **kw) -> str:
    with pytest.raises(RecipeError) as info:
        resolve_dataset(ref, root, **kw)
    return str(info.value)


def test_demo_dataset_layout_and_report(root):
    ds = resolve_dataset("digits", root)
    report = ds.report()
    assert report["layout"] == "csv" and report["classes"] == list(DIGIT_NAMES)  # the label map's order
    assert report["n_train"] + report["n_valid"] == 120 and report["n_valid"] == 24
    assert sum(c["valid"] for c in report["counts"].values()) == 24


def test_full_demo_dataset_has_1797_images(tmp_path):
    write_digits(tmp_path / "digits")
    rows = list(csv.DictReader((tmp_path / "digits" / "train.csv").open()))
    assert len(rows) == 1797 and set(rows[0]) == {"image_id", "label", "is_val"}
    assert len(list((tmp_path / "digits" / "train_images").glob("*.jpg"))) == 1797


def test_unknown_dataset_is_named(root):
    assert "unknown dataset 'cassava'" in refused("cassava", root)


def test_missing_column_is_named(root):
    rewrite_csv(root / "digits" / "train.csv", lambda rows: [[r[0], r[2]] for r in rows])
    msg = refused("digits", root)
    assert "train.csv" in msg and "label" in msg


def test_missing_images_are_counted_and_named(root):
    images = sorted((root / "digits" / "train_images").glob("*.jpg"))
    for img in images[:7]:
        img.unlink()
    msg = refused("digits", root)
    assert "7 of 120 image files are missing" in msg and images[0].name in msg


def test_undecodable_image_is_named(root):
    first = sorted((root / "digits" / "train_images").glob("*.jpg"))[0]
    rows = list(csv.DictReader((root / "digits" / "train.csv").open()))
    target = root / "digits" / "train_images" / rows[0]["image_id"]
    target.write_bytes(b"not a jpeg at all")
    msg = refused("digits", root)
    assert target.name in msg and "cannot be decoded" in msg
    assert first.exists()


def test_single_class_is_refused(root):
    rewrite_csv(root / "digits" / "train.csv", lambda rows: [rows[0]] + [[r[0], "3", r[2]] for r in rows[1:]])
    assert "at least two classes" in refused("digits", root)


def test_validation_label_unseen_in_training(root):
    def edit(rows):
        return [rows[0]] + [[r[0], r[1] if r[2] == "False" and r[1] != "9" else ("9" if r[2] == "True" else "1"), r[2]]
                            for r in rows[1:]]
    rewrite_csv(root / "digits" / "train.csv", edit)
    assert "never seen in training: nine" in refused("digits", root)


def test_bad_validation_flag_names_the_row(root):
    rewrite_csv(root / "digits" / "train.csv", lambda rows: rows[:3] + [[rows[3][0], rows[3][1], "maybe"]] + rows[4:])
    msg = refused("digits", root)
    assert "row 4" in msg and "is_val" in msg


def test_valid_pct_split_is_seeded(root):
    rewrite_csv(root / "digits" / "train.csv", lambda rows: [r[:2] for r in rows])
    def split(seed):
        return [it.is_valid for it in resolve_dataset("digits", root, seed=seed).items]
    assert split(1) == split(1) and split(1) != split(2) and sum(split(1)) == 24


@pytest.mark.parametrize("path", ["../elsewhere", "/etc", "digits/../../x"])
def test_paths_outside_the_root_are_refused(root, path):
    assert "outside the data root" in refused(DatasetSpec(layout="folder", path=path), root)


def test_sibling_prefix_and_symlink_escape_are_refused(tmp_path):
    data, sibling = tmp_path / "data", tmp_path / "data2"
    write_digits(sibling / "digits", limit=40)
    data.mkdir()
    assert "outside the data root" in refused(DatasetSpec(layout="csv", path=str(sibling / "digits")), data)
    (data / "linked").symlink_to(sibling / "digits")
    assert "outside the data root" in refused("linked", data)


def test_folder_layout(tmp_path):
    src = tmp_path / "src"
    write_digits(src, limit=60)
    rows = list(csv.DictReader((src / "train.csv").open()))
    for row in rows:
        split = "val" if row["is_val"] == "True" else "train"
        dest = tmp_path / "root" / "imagenette" / split / DIGIT_NAMES[int(row["label"])]
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / "train_images" / row["image_id"], dest)
    ds = resolve_dataset("imagenette", tmp_path / "root")
    assert ds.layout == "folder" and len(ds.items) == 60 and sum(it.is_valid for it in ds.items) == 12


def test_inline_csv_spec_with_label_map(root):
    spec = DatasetSpec(layout="csv", path="digits", csv="train.csv", images="train_images",
                       label_map={str(i): f"digit-{i}" for i in range(10)})
    ds = resolve_dataset(spec, root)
    assert ds.classes[0] == "digit-0" and ds.layout == "csv"


def test_class_order_follows_the_dataset(root):
    # No label map: numeric labels in numeric order (2 before 10), others alphabetical.
    (root / "digits" / "label_num_to_disease_map.json").unlink()
    rewrite_csv(root / "digits" / "train.csv",
                lambda rows: [rows[0]] + [[r[0], str(int(r[1]) * 5), r[2]] for r in rows[1:]])
    assert resolve_dataset("digits", root).classes == [str(5 * i) for i in range(10)]
    assert class_order({"b", "a", "C"}, []) == ["C", "a", "b"]
    # A label map's order, numerically by key however the file lists them; unnamed labels follow.
    assert class_order({"healthy", "mosaic", "x"}, ["mosaic", "healthy"]) == ["mosaic", "healthy", "x"]


def test_label_map_order_is_used_even_when_the_file_lists_keys_out_of_order(root):
    path = root / "digits" / "label_num_to_disease_map.json"
    path.write_text('{"9": "nine", "10": "ten", "0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", '
                    '"5": "five", "6": "six", "7": "seven", "8": "eight"}')
    assert resolve_dataset("digits", root).classes == list(DIGIT_NAMES)


def test_api_reports_classes_in_the_dataset_order(root, tmp_path):
    from fastapi.testclient import TestClient

    from fitboard.app.core.settings import Settings
    from fitboard.app.store.db import upgrade
    from fitboard.app.web.app import create_app

    url = f"sqlite:///{tmp_path / 'api.db'}"
    upgrade(url)
    with TestClient(create_app(Settings(home=tmp_path / "home", database_url=url, data_root=root))) as client:
        r = client.post("/api/v1/datasets", json={"name": "digits2", "spec": {
            "layout": "csv", "path": "digits", "images": "train_images", "label_map": "label_num_to_disease_map.json"}})
        assert r.status_code == 201, r.text
        assert client.get("/api/v1/datasets/digits2").json()["report"]["classes"] == list(DIGIT_NAMES)
