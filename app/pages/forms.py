"""The HTML forms: the run form <-> a recipe, the dataset register form, and problems placed beside their fields."""
from __future__ import annotations

import re

from fitboard.app.core.schemas import MAX_STAGES, AugmentSpec, RunSpec, StageSpec, TTASpec

STAGE_FIELDS = ("epochs", "size", "presize", "bs", "lr", "lr_find_iters", "freeze", "mixup")
AUG_FLAGS = ("flip", "flip_vert")
AUG_NUMBERS = ("max_rotate", "max_zoom", "max_lighting", "max_warp", "p_affine", "p_lighting", "min_scale")
RUN_FIELDS = ("name", "dataset", "arch", "pretrained", "normalize", "label_smoothing", "seed", "precision", "speed",
              "keep_best", "tta", "tta_n", "tta_use_max", "max_attempts", "augment",
              *(f"augment_{f}" for f in AUG_FLAGS + AUG_NUMBERS), "stages")
CHECKBOXES = ("pretrained", "tta", "tta_use_max", "augment", *(f"augment_{f}" for f in AUG_FLAGS))
DATASET_FIELDS = ("name", "layout", "path", "csv", "images", "label_map", "valid_pct", "image_col", "label_col",
                  "valid_col")
DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")  # the API's rule for registered names
STAGE_KEY = re.compile(r"^stages-(\d+)-(\w+)$")


# ---- the run form -------------------------------------------------------------------------------------------

def lr_text(lr) -> str:
    """A stage's lr as the form shows it: find, a number, or low, high (exact: the form round-trips a recipe)."""
    if isinstance(lr, list):
        return f"{lr[0]}, {lr[1]}"
    return lr if isinstance(lr, str) else str(lr)


def _default(model, name: str):
    """A recipe field's default as the schema declares it: the form has no defaults of its own."""
    return model.model_fields[name].get_default(call_default_factory=True)


def _text(v) -> str:
    """A value as a form box shows it: empty for None; numbers as Python prints them, which parse back exactly."""
    return "" if v is None else str(v)


def _block(spec: dict, name: str) -> dict | None:
    """A recipe's tta or augment block: its dict, or None when off; the schema's default when the key is absent."""
    v = spec.get(name, _default(RunSpec, name))
    if hasattr(v, "model_dump"):
        v = v.model_dump()
    return v if isinstance(v, dict) else None if v in (None, "none", False) else {}


def form_from_spec(spec: dict) -> dict:
    """The form's values (strings and checkboxes) for a recipe, any field it lacks at RunSpec's default.

    Used by presets, clone and import; an imported recipe may be invalid, so odd values are shown, not trusted."""
    spec = spec if isinstance(spec, dict) else {}
    stage_default = {f: _default(StageSpec, f) for f in STAGE_FIELDS if f not in ("epochs", "size", "presize")}
    rows = spec.get("stages") if isinstance(spec.get("stages"), list) else []
    stages = []
    for s in (r for r in rows[:MAX_STAGES] if isinstance(r, dict)):
        s = {**stage_default, **s}
        stages.append({**{f: _text(s.get(f)) for f in STAGE_FIELDS}, "lr": _lr_box(s.get("lr")),
                       "freeze": s.get("freeze") is True})
    ds = spec.get("dataset")
    get = lambda name: spec.get(name, _default(RunSpec, name))  # noqa: E731
    tta, augment = _block(spec, "tta"), _block(spec, "augment")
    tta_values = {**TTASpec().model_dump(), **(tta or {})}
    aug_values = {**AugmentSpec().model_dump(), **(augment or {})}
    return {"name": _text(spec.get("name", "")), "dataset": ds.get("path", "") if isinstance(ds, dict) else _text(ds),
            "arch": _text(get("arch")), "pretrained": get("pretrained") is True, "normalize": _text(get("normalize")),
            "label_smoothing": _text(get("label_smoothing")), "seed": _text(get("seed")),
            "precision": _text(get("precision")), "speed": _text(get("speed")), "keep_best": _text(get("keep_best")),
            "max_attempts": _text(get("max_attempts")),
            "tta": tta is not None, "tta_n": _text(tta_values.get("n")),
            "tta_use_max": tta_values.get("use_max") is True,
            "augment": augment is not None, **{f"augment_{f}": aug_values.get(f) is True for f in AUG_FLAGS},
            **{f"augment_{f}": _text(aug_values.get(f)) for f in AUG_NUMBERS}, "stages": stages}


def _lr_box(lr) -> str:
    """A stage's lr for its box, whatever an imported recipe put there."""
    if isinstance(lr, list) and len(lr) == 2 and all(isinstance(x, (int, float)) for x in lr):
        return lr_text(lr)
    return lr_text(lr) if isinstance(lr, (int, float)) and not isinstance(lr, bool) else _text(lr)


def form_from_post(data: dict[str, str]) -> dict:
    """The form exactly as submitted; stage rows in the order of their index (JS renumbers them)."""
    rows: dict[int, dict] = {}
    for key, value in data.items():
        if m := STAGE_KEY.match(key):
            rows.setdefault(int(m[1]), {})[m[2]] = value
    stages = [{**{f: rows[i].get(f, "") for f in STAGE_FIELDS}, "freeze": "freeze" in rows[i]} for i in sorted(rows)]
    form = {f: data.get(f, "") for f in RUN_FIELDS}
    form.update({f: f in data for f in CHECKBOXES}, stages=stages)
    return form


def _int(text: str):
    """An integer, or the text as typed so the recipe error quotes it."""
    try:
        return int(text.strip())
    except ValueError:
        return text


def _number(text: str):
    """None for an empty box, a float, or the text as typed so the recipe error quotes it."""
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return text


def parse_lr(text: str):
    """'find', a number, or 'low, high' (brackets and slice(...) tolerated) into the recipe's lr."""
    t = text.strip()
    if t.lower() == "find":
        return "find"
    if "," in t:
        parts = re.sub(r"^(slice)?[\[(]|[\])]$", "", t).split(",")
        return [_number(p) for p in parts]
    return _number(t) if t else t


def priority_of(data: dict[str, str]) -> str:
    """The priority a launch form (run, sweep, search) asks for, as typed; the service checks it (a 422 naming it)."""
    return str(data.get("priority") or "normal")


def recipe_from_form(form: dict) -> dict:
    """The recipe dict a form describes; bad values are passed on as typed so validation can name them."""
    stages = []
    for row in form["stages"]:
        stage = {"epochs": _int(row["epochs"]), "size": _int(row["size"]), "bs": _int(row["bs"]),
                 "freeze": row["freeze"], "lr": parse_lr(row["lr"])}
        if row["presize"].strip():
            stage["presize"] = _int(row["presize"])
        if row["lr_find_iters"].strip():
            stage["lr_find_iters"] = _int(row["lr_find_iters"])
        if row["mixup"].strip():
            stage["mixup"] = _number(row["mixup"])
        stages.append(stage)
    tta = {"n": _int(form["tta_n"] or str(TTASpec().n)), "use_max": form["tta_use_max"]} if form["tta"] else None
    augment = None
    if form.get("augment"):  # an empty box falls back to aug_transforms' default for that field
        augment = {f: form.get(f"augment_{f}", False) for f in AUG_FLAGS}
        augment.update({f: _number(form[f"augment_{f}"]) for f in AUG_NUMBERS if form.get(f"augment_{f}", "").strip()})
    recipe = {"name": form["name"].strip(), "dataset": form["dataset"], "arch": form["arch"],
              "pretrained": form["pretrained"], "normalize": form["normalize"],
              "label_smoothing": _number(form["label_smoothing"]),
              "seed": _int(form["seed"] or str(_default(RunSpec, "seed"))),
              "precision": form["precision"], "speed": form.get("speed") or _default(RunSpec, "speed"),
              "keep_best": form["keep_best"] or None, "tta": tta, "augment": augment, "stages": stages}
    if form.get("max_attempts", "").strip():
        recipe["max_attempts"] = _int(form["max_attempts"])
    return recipe


def run_field(loc: str) -> str:
    """The form input a recipe problem belongs to: stages[1].lr -> stages-1-lr; dataset files -> dataset."""
    if m := re.fullmatch(r"stages\[(\d+)\](?:\.(\w+))?", loc):
        return f"stages-{m[1]}-{m[2]}" if m[2] else f"stages-{m[1]}"
    if loc.startswith("tta."):
        return "tta_n" if loc == "tta.n" else "tta"
    if loc.startswith("augment."):
        key = "augment_" + loc.removeprefix("augment.")
        return key if key in RUN_FIELDS else "augment"
    return loc if loc in RUN_FIELDS else "dataset"  # the dataset resolver names files and rows, not fields


def field_label(key: str) -> str:
    """A form key as people say it: stages-1-lr -> 'stage 2 lr', tta_n -> 'tta n'."""
    if m := re.fullmatch(r"stages-(\d+)(?:-(\w+))?", key):
        return f"stage {int(m[1]) + 1}" + (f" {m[2].replace('_', ' ')}" if m[2] else "")
    return key.replace("_", " ")


def field_errors(problems: list[dict], field=run_field) -> dict[str, list[str]]:
    """Recipe problems grouped by the form field they belong to."""
    errors: dict[str, list[str]] = {}
    for p in problems:
        errors.setdefault(field(p.get("loc") or ""), []).append(p["msg"])
    return errors


# ---- the dataset form --------------------------------------------------------------------------------------

def dataset_form(data: dict[str, str]) -> dict:
    """The register form as submitted."""
    return {f: data.get(f, "").strip() for f in DATASET_FIELDS}


def dataset_spec_from_form(form: dict) -> dict:
    """The inline DatasetSpec a register form describes (csv fields only for the csv layout)."""
    spec = {"layout": form["layout"], "path": form["path"]}
    if form["layout"] == "csv":
        for f in ("csv", "images", "label_map", "image_col", "label_col", "valid_col"):
            if form[f]:
                spec[f] = form[f]
        if form["valid_pct"]:
            spec["valid_pct"] = _number(form["valid_pct"])
    return spec


def dataset_field(loc: str) -> str:
    """The register-form input a dataset problem belongs to (files and rows go beside the path)."""
    field = loc.removeprefix("dataset.")
    return field if field in DATASET_FIELDS else "path"
