"""The seed notebook's four experiments as run-form presets, sized for each dataset's images; the digits demo too."""
from __future__ import annotations

from fitboard.app.pages.forms import form_from_spec
from fitboard.app.services.datasets import DatasetInfo


def dataset_choices(infos: list[DatasetInfo]) -> list[dict]:
    """Usable datasets for the run form, with a one-line summary and the presets sized for their images."""
    out = []
    for info in infos:
        if info.resolved is None:
            continue
        r = info.report
        out.append({"name": info.name, "registered": info.registered, "presets": presets(info.name, info.image_side),
                    "summary": f"{r['n_train'] + r['n_valid']} images, {len(r['classes'])} classes, "
                               f"{info.image_side} px, {'registered' if info.registered else 'folder'}"})
    return out


FINDER_STEPS = 100
# How long the demo recipe takes, said the same way everywhere (README, docs/recipes.md, recipes/demo.yaml, the
# run form): 19 s measured with `fitboard up` on a 2-core CPU; bench/demo_eta.py measures it on another machine.
DEMO_LENGTH = "about 20 s on a 2-core CPU"
DEMO_DATASET = "digits"  # the name `fitboard up` registers the demo data under (ensure_demo_dataset)
NO_FLIPS = {"flip": False}  # a mirrored digit is not a digit (bench/augment.py measures what flips cost)
# recipes/demo.yaml as a preset (the file is not shipped in the package; tests/test_recipe_io.py keeps them equal).
DEMO_RECIPE = {
    "name": "digits-demo", "dataset": DEMO_DATASET, "arch": "resnet18", "pretrained": False, "normalize": "dataset",
    "label_smoothing": 0.1, "seed": 42, "precision": "fp32", "keep_best": "accuracy",
    "tta": {"n": 2, "use_max": False}, "augment": NO_FLIPS,
    "stages": [{"epochs": 2, "size": 24, "presize": 32, "bs": 64, "freeze": False, "lr": 1.0e-3},
               {"epochs": 1, "size": 32, "presize": 40, "bs": 64, "freeze": False, "lr": [1.0e-4, 1.0e-3],
                "mixup": 0.2}],
}


def _mult8(x: float) -> int:
    """Round down to a multiple of 8 (at least 16): sizes a CNN's strides divide cleanly."""
    return max(16, int(x) // 8 * 8)


def presets(name: str, image_side: int | None) -> list[dict]:
    """The seed notebook's four experiments, sized for a dataset's images (a few seconds on digits), as form values."""
    return [{"key": key, "title": title, "about": about, "form": form_from_spec(recipe)}
            for key, title, about, recipe in preset_recipes(name, image_side)]


def preset_recipes(name: str, image_side: int | None, finder: int | None = None) -> list[tuple[str, str, str, dict]]:
    """(key, title, about, recipe) of each preset; finder overrides the LR finder's steps (bench/lr_find_steps.py)."""
    side = image_side or 224
    if side >= 448:  # photos like Cassava: the notebook as written
        small, large, bs = (224, 460), (448, 560), (64, 32)
        arch, pretrained, epochs = "resnet50", True, (15, 5, 50)
        lr2 = [1e-6, 1e-4]
    else:
        big = _mult8(min(side, 224))
        small, large, bs = (_mult8(big * 0.75), big), (big, _mult8(big * 1.25)), (64, 64)
        pretrained = side >= 128
        arch, epochs = ("resnet34", (5, 3, 10)) if pretrained else ("resnet18", (2, 2, 3))
        lr2 = [1e-5, 1e-3] if pretrained else [1e-4, 2e-3]
    # LR finder steps: fastai's default 100. Measured on digits (bench/lr_find_steps.py, first stage of the presets):
    # 20 steps suggest 2.5e-5, on the flat start of the curve, 50 steps 4.8e-4 and 100 steps 8.3e-4 (the rate a fixed
    # 1e-3 shows to work), the loss falling until ~1e-1. Trained (--train, seed 42): 20 steps, baseline 77.2%,
    # progressive 76.3%; 100 steps, baseline 88.3%, progressive 88.0% (TTA 90.8%), MixUp 90.8%, smoothing 90.0%.
    finder = finder or FINDER_STEPS
    norm = "imagenet" if pretrained else "dataset"
    base = {"arch": arch, "pretrained": pretrained, "seed": 42, "precision": "fp32", "keep_best": None,
            "tta": None, "label_smoothing": None, "dataset": name}
    first = {"epochs": epochs[0], "size": small[0], "presize": small[1], "bs": bs[0], "freeze": pretrained,
             "lr": "find", "lr_find_iters": finder}
    second = {"epochs": epochs[1], "size": large[0], "presize": large[1], "bs": bs[1], "freeze": False, "lr": lr2}
    mix = {**second, "epochs": epochs[2], "mixup": 0.2}
    baseline = {"epochs": epochs[0] + epochs[1], "size": large[0], "presize": large[0], "bs": bs[1],
                "freeze": pretrained, "lr": "find", "lr_find_iters": finder}
    tta = {"n": 4, "use_max": False}
    recipes = [
        ("baseline", "1. Baseline", "One stage at a fixed size, no normalization, no presizing.",
         {"normalize": "none", "stages": [baseline]}),
        ("progressive", "2. Normalize + progressive resizing",
         f"{'ImageNet' if pretrained else 'Dataset'} stats; "
         f"train small ({small[0]} px), then larger ({large[0]} px); TTA.",
         {"normalize": norm, "tta": tta, "stages": [first, second]}),
        ("mixup", "3. + MixUp", "Adds a longer MixUp stage and keeps the best epoch's weights.",
         {"normalize": norm, "tta": tta, "keep_best": "accuracy", "stages": [first, second, mix]}),
        ("smoothing", "4. + Label smoothing", "As 3, with label-smoothing cross entropy (eps 0.1).",
         {"normalize": norm, "tta": tta, "keep_best": "accuracy", "label_smoothing": 0.1,
          "stages": [first, second, mix]}),
    ]
    if name == DEMO_DATASET:
        base["augment"] = NO_FLIPS
    out = [(key, title, about, {**base, **extra, "name": f"{name}-{key}"}) for key, title, about, extra in recipes]
    if name == DEMO_DATASET:
        out.append(("demo", "5. Demo recipe", f"recipes/demo.yaml: every technique at once, in {DEMO_LENGTH}.",
                    DEMO_RECIPE))
    return out
