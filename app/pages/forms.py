"""The HTML forms: the run form <-> a recipe, the dataset register form, and problems placed beside their fields."""
from __future__ import annotations

import re

STAGE_FIELDS = ("epochs", "size", "presize", "bs", "lr", "lr_find_iters", "freeze", "mixup")
RUN_FIELDS = ("name", "dataset", "arch", "pretrained", "normalize", "label_smoothing", "seed", "precision", "speed",
              "keep_best", "tta", "tta_n", "tta_use_max", "stages")
DATASET_FIELDS = ("name", "layout", "path", "csv", "images", "label_map", "valid_pct", "image_col", "label_col",
                  "valid_col")
DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")  # the API's rule for registered names
STAGE_KEY = re.compile(r"^stages-(\d+)-(\w+)$")


# ---- the run form -------------------------------------------------------------------------------------------

def lr_text(lr) -> str:
    """A stage's lr as the form shows it: find, a number, or low, high."""
    if isinstance(lr, list):
        return f"{lr[0]:g}, {lr[1]:g}"
    return lr if isinstance(lr, str) else f"{lr:g}"


def form_from_spec(spec: dict) -> dict:
    """The form's values (strings and checkboxes) for a recipe: used by presets and clone."""
    ds = spec.get("dataset")
    tta = spec.get("tta")
    opt = lambda v: "" if v is None else str(v)  # noqa: E731
    stages = [{"epochs": opt(s.get("epochs")), "size": opt(s.get("size")), "presize": opt(s.get("presize")),
               "bs": opt(s.get("bs", 64)), "lr": lr_text(s.get("lr", "find")),
               "lr_find_iters": opt(s.get("lr_find_iters", 100)), "freeze": bool(s.get("freeze")),
               "mixup": opt(s.get("mixup"))} for s in spec.get("stages") or []]
    return {"name": spec.get("name", ""), "dataset": ds["path"] if isinstance(ds, dict) else (ds or ""),
            "arch": spec.get("arch", "resnet18"), "pretrained": bool(spec.get("pretrained", False)),
            "normalize": spec.get("normalize", "imagenet"), "label_smoothing": opt(spec.get("label_smoothing")),
            "seed": opt(spec.get("seed", 42)), "precision": spec.get("precision", "fp32"),
            "speed": spec.get("speed", "default"), "keep_best": spec.get("keep_best") or "", "tta": bool(tta),
            "tta_n": str((tta or {}).get("n", 4)),
            "tta_use_max": bool((tta or {}).get("use_max")), "stages": stages}


def form_from_post(data: dict[str, str]) -> dict:
    """The form exactly as submitted; stage rows in the order of their index (JS renumbers them)."""
    rows: dict[int, dict] = {}
    for key, value in data.items():
        if m := STAGE_KEY.match(key):
            rows.setdefault(int(m[1]), {})[m[2]] = value
    stages = [{**{f: rows[i].get(f, "") for f in STAGE_FIELDS}, "freeze": "freeze" in rows[i]} for i in sorted(rows)]
    form = {f: data.get(f, "") for f in RUN_FIELDS}
    form.update(pretrained="pretrained" in data, tta="tta" in data, tta_use_max="tta_use_max" in data, stages=stages)
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
    tta = {"n": _int(form["tta_n"] or "4"), "use_max": form["tta_use_max"]} if form["tta"] else None
    return {"name": form["name"].strip(), "dataset": form["dataset"], "arch": form["arch"],
            "pretrained": form["pretrained"], "normalize": form["normalize"],
            "label_smoothing": _number(form["label_smoothing"]), "seed": _int(form["seed"] or "42"),
            "precision": form["precision"], "speed": form.get("speed") or "default",
            "keep_best": form["keep_best"] or None, "tta": tta, "stages": stages}


def run_field(loc: str) -> str:
    """The form input a recipe problem belongs to: stages[1].lr -> stages-1-lr; dataset files -> dataset."""
    if m := re.fullmatch(r"stages\[(\d+)\](?:\.(\w+))?", loc):
        return f"stages-{m[1]}-{m[2]}" if m[2] else f"stages-{m[1]}"
    if loc.startswith("tta."):
        return "tta_n" if loc == "tta.n" else "tta"
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
