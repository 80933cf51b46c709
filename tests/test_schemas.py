"""The recipe contract: every bad field is refused with a message that names it."""
from __future__ import annotations

import json

import pytest

from fitboard.app.core.recipes import load_recipe
from fitboard.app.core.schemas import RecipeError, parse_spec
from tests.helpers import tiny_recipe


def problems(recipe: dict) -> dict[str, str]:
    """The {field path: message} a recipe is refused with."""
    with pytest.raises(RecipeError) as info:
        parse_spec(recipe)
    return {p["loc"]: p["msg"] for p in info.value.problems}


def with_stage(**fields) -> dict:
    """The tiny recipe with its first stage's fields replaced."""
    recipe = tiny_recipe()
    recipe["stages"][0].update(fields)
    return recipe


def test_seed_and_demo_recipes_load():
    seed = load_recipe("recipes/cassava-seed.yaml")
    assert [s.size for s in seed.stages] == [224, 448, 448]
    assert seed.stages[0].lr == "find" and seed.stages[1].lr == [1e-6, 1e-4] and seed.stages[2].mixup == 0.2
    assert seed.tta.n == 4 and seed.keep_best == "accuracy"
    assert "progressive resizing" in seed.techniques() and "mixup" in seed.techniques()
    demo = load_recipe("recipes/demo.yaml")
    assert demo.dataset == "digits" and demo.pretrained is False


def test_json_recipe_file(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(tiny_recipe()))
    assert load_recipe(path).stages[0].presize == 40


def test_malformed_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed")
    with pytest.raises(RecipeError, match="bad.yaml"):
        load_recipe(path)
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "missing.yaml")


@pytest.mark.parametrize("fields, loc, words", [
    ({"epochs": 0}, "stages[0].epochs", "positive integer"),
    ({"epochs": 2.5}, "stages[0].epochs", "positive integer"),
    ({"bs": -4}, "stages[0].bs", "positive integer"),
    ({"size": 0}, "stages[0].size", "positive integer"),
    ({"presize": 24}, "stages[0].presize", "smaller than size"),
    ({"lr": 0}, "stages[0].lr", "positive"),
    ({"lr": "fnd"}, "stages[0].lr", "'find'"),
    ({"lr": [1e-2, 1e-4]}, "stages[0].lr", "low < high"),
    ({"lr": [1e-4]}, "stages[0].lr", "two numbers"),
    ({"mixup": 0}, "stages[0].mixup", "(0, 1]"),
    ({"mixup": 1.5}, "stages[0].mixup", "(0, 1]"),
])
def test_stage_fields_are_checked(fields, loc, words):
    found = problems(with_stage(**fields))
    assert loc in found and words in found[loc]


@pytest.mark.parametrize("fields, loc, words", [
    ({"arch": "resnet5"}, "arch", "unknown architecture"),
    ({"label_smoothing": 1.0}, "label_smoothing", "(0, 1)"),
    ({"label_smoothing": 0}, "label_smoothing", "(0, 1)"),
    ({"stages": []}, "stages", "at least one stage"),
    ({"tta": {"n": 0}}, "tta.n", "greater than or equal to 1"),
    ({"normalize": "zscore"}, "normalize", "imagenet"),
    ({"keep_best": "f1"}, "keep_best", "accuracy"),
    ({"learning_rate": 1}, "learning_rate", "not permitted"),
    ({"dataset": {"layout": "csv"}}, "dataset.path", "required"),
])
def test_recipe_fields_are_checked(fields, loc, words):
    found = problems(tiny_recipe(**fields))
    assert loc in found and words in found[loc]


def test_good_values_pass():
    spec = parse_spec(with_stage(lr=[1e-5, 1e-3], mixup=1.0, presize=None))
    assert spec.stages[0].lr == [1e-5, 1e-3] and spec.stages[0].presize == spec.stages[0].size
    assert parse_spec(tiny_recipe(label_smoothing=0.1, tta={"n": 1})).tta.use_max is False
