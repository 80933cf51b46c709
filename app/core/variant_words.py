"""A sweep variant's changes in words ("without progressive resizing", "MixUp 0.2"), from the technique names the
recipe already knows; the field path (stages[0].size=32) stays the variant's key and shows on hover."""
from __future__ import annotations

import json
import re

_STAGE = re.compile(r"stages\[(\d+)\]\.(\w+)")
NORMALIZE = {"none": "no normalization", "imagenet": "ImageNet normalization", "dataset": "dataset normalization"}


def fmt_lr(value) -> str:
    """A learning rate the way people write it: 1.2e-3, 0.01."""
    v = float(value)
    if 1e-2 <= v < 10:
        return f"{v:.2g}"
    mantissa, exponent = f"{v:.1e}".split("e")
    return f"{mantissa.removesuffix('.0')}e{int(exponent)}"


def _num(value) -> str:
    """A number as people write it (0.2, 1e-05); anything else as the recipe file would spell it."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:g}"
    return value if isinstance(value, str) else json.dumps(value)


def _lr(value) -> str:
    """An lr field's value in words."""
    if value == "find":
        return "LR finder"
    try:
        if isinstance(value, list) and len(value) == 2:
            return f"discriminative lr slice({fmt_lr(value[0])}, {fmt_lr(value[1])})"
        return f"lr {fmt_lr(value)}"
    except (TypeError, ValueError):  # a value the recipe refused would never reach a report; never fail the page
        return f"lr {_num(value)}"


def _is_progressive_off(base: dict, overrides: dict) -> bool:
    """True when the base grows its size across stages and the overrides make every stage train at one size."""
    stages = base.get("stages") or []
    sizes = [s.get("size") for s in stages]
    after = [overrides.get(f"stages[{i}].size", size) for i, size in enumerate(sizes)]
    return len({repr(x) for x in sizes}) > 1 and len({repr(x) for x in after}) == 1  # repr: any value, hashable


def _stage_change(i: int, field: str, value, base: dict) -> str:
    """One stage field's new value in words; 'in stage n' only when the recipe has more than one stage."""
    stages = base.get("stages") or []
    where = f" in stage {i + 1}" if len(stages) > 1 else ""
    old = stages[i].get(field) if i < len(stages) else None
    if field == "mixup":
        return f"MixUp {_num(value)}{where}" if value else f"no MixUp{where}"
    if field == "lr":
        if old == "find" and value != "find":
            return f"no LR finder{where} ({_lr(value)})"
        return f"{_lr(value)}{where}"
    if field == "freeze":
        return f"{'frozen' if value else 'unfrozen'}{where}"
    if field == "epochs":
        return f"{value} epoch{'s' if value != 1 else ''}{where}"
    if field in ("size", "presize"):
        return f"{field} {value} px{where}"
    if field == "bs":
        return f"batch size {value}{where}"
    return f"{field} {json.dumps(value)}{where}"


def describe_change(path: str, value, base: dict) -> str:
    """One overridden field in words, e.g. 'label smoothing 0.1', 'no TTA', 'no MixUp in stage 2'."""
    stage = _STAGE.fullmatch(path)
    if stage:
        return _stage_change(int(stage[1]), stage[2], value, base)
    if path == "label_smoothing":
        return f"label smoothing {_num(value)}" if value else "no label smoothing"
    if path == "normalize":
        return NORMALIZE.get(value, f"normalize {_num(value)}") if isinstance(value, str) else f"normalize {value}"
    if path == "tta":
        if not value:
            return "no TTA"
        if not isinstance(value, dict):
            return f"TTA {_num(value)}"
        return f"TTA n={value.get('n')}" + (" (max)" if value.get("use_max") else "")
    if path == "keep_best":
        return f"keep best by {value}" if value else "no keep-best"
    if path == "pretrained":
        return "pretrained" if value else "from scratch"
    if path == "precision":
        return f"{value} precision"
    if path in ("arch", "dataset", "seed"):
        return f"{path} {value}"
    return f"{path} {json.dumps(value)}"


def variant_words(overrides: dict, base: dict) -> str:
    """A variant's label in words: its changes joined by commas, 'base' for none."""
    if not overrides:
        return "base"
    words, rest = [], dict(overrides)
    if _is_progressive_off(base, overrides):
        # Stage sizes flattened to one: the technique dropped, not a list of sizes.
        words.append("without progressive resizing")
        rest = {p: v for p, v in rest.items() if not (p.startswith("stages[") and p.endswith("].size"))}
    words += [describe_change(p, v, base) for p, v in rest.items()]
    return ", ".join(words)
