"""Recipe builders shared by the tests."""
from __future__ import annotations

import copy

TINY_RECIPE = {
    "name": "tiny",
    "dataset": "digits",
    "arch": "squeezenet1_1",  # 1.2M parameters: a CPU epoch on 240 images takes about a second
    "pretrained": False,
    "normalize": "dataset",
    "seed": 7,
    "stages": [{"epochs": 1, "size": 32, "presize": 40, "bs": 32, "lr": 3e-3}],
}


def tiny_recipe(**overrides) -> dict:
    """A copy of the tiny recipe with top-level fields replaced."""
    recipe = copy.deepcopy(TINY_RECIPE)
    recipe.update(copy.deepcopy(overrides))
    return recipe
