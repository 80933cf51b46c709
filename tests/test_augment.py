"""Augmentation per recipe: the augment block is validated, builds the DataLoaders' batch transforms, TTA uses them."""
from __future__ import annotations

import pytest
import torch
from fastai.callback.core import Callback
from fastai.vision.all import LightingTfm, RandomResizedCropGPU, resnet18, vision_learner
from fastai.vision.augment import AffineCoordTfm
from fastapi.testclient import TestClient

from fitboard.app.core.datasets import resolve_dataset
from fitboard.app.core.recipes import load_recipe
from fitboard.app.core.schemas import AugmentSpec, RecipeError, parse_spec
from fitboard.app.core.settings import Settings
from fitboard.app.web.app import create_app
from fitboard.worker.data import items_frame, make_dls
from fitboard.worker.engine import run_recipe
from fitboard.worker.reporters import ListReporter
from tests.helpers import tiny_recipe
from tests.store_fixtures import *  # noqa: F401,F403


def problems(augment) -> dict[str, str]:
    """The {field path: message} a recipe with this augment block is refused with."""
    with pytest.raises(RecipeError) as info:
        parse_spec(tiny_recipe(augment=augment))
    return {p["loc"]: p["msg"] for p in info.value.problems}


def test_augment_defaults_are_aug_transforms_and_none_turns_it_off():
    spec = parse_spec(tiny_recipe())
    assert spec.augment == AugmentSpec(flip=True, flip_vert=False, max_rotate=10.0, max_zoom=1.1, max_lighting=0.2,
                                       max_warp=0.2, p_affine=0.75, p_lighting=0.75, min_scale=0.75)
    assert parse_spec(tiny_recipe(augment=None)).augment is None
    assert parse_spec(tiny_recipe(augment="none")).augment is None
    assert parse_spec(tiny_recipe(augment={"flip": False})).augment.max_rotate == 10.0
    assert "no augmentation" in parse_spec(tiny_recipe(augment=None)).techniques()
    assert load_recipe("recipes/demo.yaml").augment == AugmentSpec(flip=False)  # a mirrored digit is not a digit


@pytest.mark.parametrize("augment, loc, words", [
    ({"max_rotate": 500}, "augment.max_rotate", "less than or equal to 180"),
    ({"max_rotate": -1}, "augment.max_rotate", "greater than or equal to 0"),
    ({"max_rotate": True}, "augment.max_rotate", "valid number"),
    ({"max_zoom": 0.5}, "augment.max_zoom", "greater than or equal to 1"),
    ({"max_lighting": 1}, "augment.max_lighting", "less than 1"),
    ({"max_warp": float("nan")}, "augment.max_warp", "less than 1"),
    ({"p_affine": 1.5}, "augment.p_affine", "less than or equal to 1"),
    ({"p_lighting": -0.1}, "augment.p_lighting", "greater than or equal to 0"),
    ({"min_scale": 0}, "augment.min_scale", "greater than 0"),
    ({"flip": "maybe"}, "augment.flip", "valid boolean"),
    ({"flip": False, "flip_vert": True}, "augment.flip_vert", "flip_vert needs flip: true"),
    ({"rotate": 5}, "augment.rotate", "Extra inputs are not permitted"),
    ("sometimes", "augment", "augment must be a block of fields"),
])
def test_bad_augment_values_are_refused_naming_the_field(augment, loc, words):
    found = problems(augment)
    assert list(found) == [loc] and words in found[loc]


def test_api_answers_422_naming_augment_field(tmp_path, sqlite_url, data_root):
    with TestClient(create_app(Settings(home=tmp_path, database_url=sqlite_url, data_root=data_root))) as client:
        r = client.post("/api/v1/runs", json=tiny_recipe(augment={"max_rotate": 500, "p_affine": 2}))
        assert r.status_code == 422
        assert {p["loc"] for p in r.json()["detail"]} == {"augment.max_rotate", "augment.p_affine"}
        ok = client.post("/api/v1/runs", json=tiny_recipe(augment={"flip": False, "max_rotate": 5}))
        assert ok.status_code in (201, 202), ok.text
        stored = client.get(f"/api/v1/runs/{ok.json()['id']}").json()["spec"]["augment"]
        assert stored == {**AugmentSpec().model_dump(), "flip": False, "max_rotate": 5.0}


def augmentations(pipeline) -> dict:
    """What a batch pipeline augments with, read from fastai's composed transforms: {name: parameter}."""
    found = {}
    for tfm in pipeline.fs:
        if isinstance(tfm, RandomResizedCropGPU):
            found["crop_min_scale"] = tfm.min_scale
        if isinstance(tfm, AffineCoordTfm):
            for f in tfm.aff_fs:
                kept = {k: v for k, v in f.keywords.items() if not k.startswith("draw") and k != "batch"}
                found[f.func.__name__] = kept
            for f in tfm.coord_fs:
                found["warp"] = {"magnitude": f.magnitude, "p": f.p}
        if isinstance(tfm, LightingTfm):
            for f in tfm.fs:
                found[type(f).__name__] = {"max_lighting": f.max_lighting, "p": f.p}
    return found


def train_dls(data_root, augment):
    """The tiny recipe's first-stage DataLoaders, built by the worker from a recipe with this augment block."""
    spec = parse_spec(tiny_recipe(augment=augment))
    ds = resolve_dataset("digits", data_root)
    return make_dls(items_frame(ds), ds.classes, spec.stages[0], None, num_workers=0, augment=spec.augment)


def test_the_dataloaders_carry_the_recipes_augmentations(data_root):
    default = augmentations(train_dls(data_root, AugmentSpec().model_dump()).train.after_batch)
    assert default == {"flip_mat": {"p": 0.5}, "warp": {"magnitude": 0.2, "p": 0.75},
                       "rotate_mat": {"max_deg": 10.0, "p": 0.75},
                       "zoom_mat": {"min_zoom": 1.0, "max_zoom": 1.1, "p": 0.75},
                       "_BrightnessLogit": {"max_lighting": 0.2, "p": 0.75},
                       "_ContrastLogit": {"max_lighting": 0.2, "p": 0.75}, "crop_min_scale": 0.75}

    mine = augmentations(train_dls(data_root, {"flip": False, "max_rotate": 5, "max_warp": 0, "max_zoom": 1.5,
                                               "p_affine": 0.5, "max_lighting": 0.1, "p_lighting": 1,
                                               "min_scale": 0.9}).train.after_batch)
    assert mine == {"rotate_mat": {"max_deg": 5.0, "p": 0.5}, "zoom_mat": {"min_zoom": 1.0, "max_zoom": 1.5, "p": 0.5},
                    "_BrightnessLogit": {"max_lighting": 0.1, "p": 1.0},
                    "_ContrastLogit": {"max_lighting": 0.1, "p": 1.0}, "crop_min_scale": 0.9}
    dihedral = augmentations(train_dls(data_root, {"flip_vert": True}).train.after_batch)
    assert "dihedral_mat" in dihedral and "flip_mat" not in dihedral

    dls = train_dls(data_root, None)
    assert augmentations(dls.train.after_batch) == {"crop_min_scale": 1.0}  # only the resize to size
    x, _ = dls.train.one_batch()
    assert x.shape[-2:] == (32, 32)  # presize 40 -> size 32 without any augmentation


def tta_gap(data_root, augment) -> float:
    """Largest difference between TTA's and the plain pass's probabilities, for an untrained model."""
    dls = train_dls(data_root, augment)
    torch.manual_seed(0)
    learn = vision_learner(dls, resnet18, pretrained=False)
    plain, _ = learn.get_preds(dl=dls.valid)
    tta, _ = learn.tta(dl=dls.valid, n=2)
    return float((tta - plain).abs().max())


def test_tta_uses_the_recipes_augmentations(data_root):
    # TTA runs the DataLoaders' batch transforms in training mode: with augment none its passes are the plain pass.
    assert tta_gap(data_root, None) < 1e-5
    assert tta_gap(data_root, AugmentSpec().model_dump()) > 1e-3


class SeenTransforms(Callback):
    """Records the batch augmentations of the DataLoaders each fit trains on."""

    def __init__(self):
        self.seen = []

    def before_fit(self):
        self.seen.append(augmentations(self.learn.dls.train.after_batch))


def test_a_trained_recipe_uses_its_augment_block(data_root, tmp_path):
    probe = SeenTransforms()
    spec = parse_spec(tiny_recipe(augment={"flip": False, "max_rotate": 5, "max_warp": 0, "max_lighting": 0}))
    result = run_recipe(spec, ListReporter(), data_root, tmp_path, num_workers=0, extra_cbs=(probe,))
    assert result.metrics.accuracy is not None
    assert probe.seen[0] == {"rotate_mat": {"max_deg": 5.0, "p": 0.75},
                             "zoom_mat": {"min_zoom": 1.0, "max_zoom": 1.1, "p": 0.75}, "crop_min_scale": 0.75}
