"""What the HTML pages compute: the run form <-> recipe, presets, field errors, dataset summaries, wording."""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from PIL import Image
from pydantic import ValidationError

from app.datasets import ResolvedDataset, resolve_dataset
from app.schemas import DatasetSpec, RecipeError

STAGE_FIELDS = ("epochs", "size", "presize", "bs", "lr", "lr_find_iters", "freeze", "mixup")
RUN_FIELDS = ("name", "dataset", "arch", "pretrained", "normalize", "label_smoothing", "seed", "precision",
              "keep_best", "tta", "tta_n", "tta_use_max", "stages")
DATASET_FIELDS = ("name", "layout", "path", "csv", "images", "label_map", "valid_pct", "image_col", "label_col",
                  "valid_col")
DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")  # the API's rule for registered names
STAGE_KEY = re.compile(r"^stages-(\d+)-(\w+)$")
CACHE_SECONDS = 60.0  # resolving re-reads the CSV and decodes images; pages ask again on every load


# ---- the runs list ------------------------------------------------------------------------------------------

def query(params: dict, **changes) -> str:
    """A query string for the runs list with some parameters changed (empty ones dropped)."""
    merged = {k: v for k, v in {**params, **changes}.items() if v not in (None, "", [])}
    return "?" + urlencode(merged, doseq=True) if merged else "?"


def next_order(column: str, order: str) -> str:
    """A header click sorts by that column, a second click reverses; text starts at A, numbers and dates high."""
    if order == column:
        return f"-{column}"
    if order == f"-{column}":
        return column
    return column if column in ("name", "dataset", "status") else f"-{column}"


# ---- the run form -------------------------------------------------------------------------------------------

def fmt_lr(value) -> str:
    """A learning rate the way people write it: 1.2e-3, 0.01."""
    v = float(value)
    if 1e-2 <= v < 10:
        return f"{v:.2g}"
    mantissa, exponent = f"{v:.1e}".split("e")
    return f"{mantissa.removesuffix('.0')}e{int(exponent)}"


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
            "keep_best": spec.get("keep_best") or "", "tta": bool(tta), "tta_n": str((tta or {}).get("n", 4)),
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
            "precision": form["precision"], "keep_best": form["keep_best"] or None, "tta": tta, "stages": stages}


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


# ---- datasets -----------------------------------------------------------------------------------------------

@dataclass
class DatasetInfo:
    """A dataset as the pages list it: registered or a bare folder, its report, or why it cannot be used."""

    name: str
    registered: bool
    resolved: ResolvedDataset | None
    error: str | None = None
    image_side: int | None = None  # the shorter side of its first image, to size the presets

    @property
    def report(self) -> dict | None:
        return self.resolved.report() if self.resolved else None


_cache: dict[tuple, tuple[float, DatasetInfo]] = {}


def dataset_info(name: str, data_root: Path, spec: dict | None = None) -> DatasetInfo:
    """Resolve a registered spec or a folder under the data root (cached briefly; errors become text)."""
    root = Path(data_root)
    base = root / (spec["path"] if spec else name)
    stamp = base.stat().st_mtime_ns if base.exists() else 0
    key = (str(root), name, json.dumps(spec, sort_keys=True), stamp)
    hit = _cache.get(key)
    if hit and time.monotonic() - hit[0] < CACHE_SECONDS:
        return hit[1]
    try:
        resolved = resolve_dataset(DatasetSpec.model_validate(spec) if spec else name, root)
        resolved.name = name
        with Image.open(resolved.items[0].path) as im:
            side = min(im.size)
        info = DatasetInfo(name, spec is not None, resolved, image_side=side)
    except (RecipeError, ValidationError, OSError) as exc:
        info = DatasetInfo(name, spec is not None, None, error=str(exc))
    if len(_cache) > 64:
        _cache.clear()
    _cache[key] = (time.monotonic(), info)
    return info


def dataset_infos(registered: list, data_root: Path) -> list[DatasetInfo]:
    """Registered datasets, then folders directly under the data root that are not registered."""
    infos = [dataset_info(d.name, data_root, d.spec) for d in registered]
    taken = {d.name for d in registered}
    root = Path(data_root)
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []
    return infos + [dataset_info(f, data_root) for f in folders if f not in taken]


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


def sample_indices(resolved: ResolvedDataset, per_class: int = 2, limit: int = 12) -> list[int]:
    """Indices of a few images, spread over the classes, for the dataset page."""
    seen: dict[str, int] = {}
    picked = []
    for i, item in enumerate(resolved.items):
        if seen.get(item.label, 0) < per_class and len(picked) < limit:
            seen[item.label] = seen.get(item.label, 0) + 1
            picked.append(i)
    return picked


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


# ---- presets ------------------------------------------------------------------------------------------------

def _mult8(x: float) -> int:
    """Round down to a multiple of 8 (at least 16): sizes a CNN's strides divide cleanly."""
    return max(16, int(x) // 8 * 8)


def presets(name: str, image_side: int | None) -> list[dict]:
    """The seed notebook's four experiments, sized for a dataset's images (a few seconds on digits)."""
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
    finder = 100 if pretrained else 20  # a from-scratch model on small images: a short sweep finds the valley
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
         f"{'ImageNet' if pretrained else 'Dataset'} stats; train small ({small[0]} px), then larger ({large[0]} px); TTA.",
         {"normalize": norm, "tta": tta, "stages": [first, second]}),
        ("mixup", "3. + MixUp", "Adds a longer MixUp stage and keeps the best epoch's weights.",
         {"normalize": norm, "tta": tta, "keep_best": "accuracy", "stages": [first, second, mix]}),
        ("smoothing", "4. + Label smoothing", "As 3, with label-smoothing cross entropy (eps 0.1).",
         {"normalize": norm, "tta": tta, "keep_best": "accuracy", "label_smoothing": 0.1,
          "stages": [first, second, mix]}),
    ]
    return [{"key": key, "title": title, "about": about, "form": form_from_spec({**base, **extra, "name": f"{name}-{key}"})}
            for key, title, about, extra in recipes]


# ---- wording for the run page -------------------------------------------------------------------------------

def describe_stage(idx: int, stage: dict, suggestion: float | None = None) -> str:
    """One stage in words: 'stage 1: 2 epochs at 24 px (presize 32), bs 64, frozen, lr found by LR finder (valley 1.2e-3)'."""
    n, size, presize = stage["epochs"], stage["size"], stage.get("presize") or stage["size"]
    parts = [f"stage {idx + 1}: {n} epoch{'s' if n != 1 else ''} at {size} px"
             + (f" (presize {presize})" if presize != size else ""), f"bs {stage.get('bs', 64)}",
             "frozen" if stage.get("freeze") else "unfrozen"]
    lr = stage.get("lr", "find")
    if lr == "find":
        parts.append("lr found by LR finder" + (f" (valley {fmt_lr(suggestion)})" if suggestion else ""))
    elif isinstance(lr, list):
        parts.append(f"discriminative lr slice({fmt_lr(lr[0])}, {fmt_lr(lr[1])})")
    else:
        parts.append(f"lr {fmt_lr(lr)}")
    if stage.get("mixup"):
        parts.append(f"MixUp α={stage['mixup']:g}")
    return ", ".join(parts)


def heat(matrix: list[list[int]]) -> list[list[tuple[int, float, bool]]]:
    """Confusion cells as (count, share of the actual class, on the diagonal)."""
    # Shading by the row's share makes a rare class's mistakes as visible as a common class's.
    return [[(n, n / max(sum(row), 1), i == j) for j, n in enumerate(row)] for i, row in enumerate(matrix)]


def describe_techniques(spec: dict) -> list[str]:
    """The recipe's global choices in words."""
    norm = {"none": "no normalization", "imagenet": "normalized with ImageNet stats",
            "dataset": "normalized with the dataset's own stats"}[spec.get("normalize", "imagenet")]
    words = [f"{spec.get('arch')} ({'pretrained' if spec.get('pretrained') else 'from scratch'})", norm]
    eps = spec.get("label_smoothing")
    words.append(f"label smoothing eps {eps:g}" if eps else "plain cross entropy")
    if spec.get("keep_best"):
        words.append(f"keeps the best epoch by {spec['keep_best']}")
    tta = spec.get("tta")
    if tta:
        words.append(f"TTA with {tta['n']} augmented passes ({'max' if tta.get('use_max') else 'mean'})")
    words.append(f"{spec.get('precision', 'fp32')} precision, seed {spec.get('seed', 42)}")
    return words
