"""A sweep variant's changes in words ("without progressive resizing", "MixUp 0.2"), from the technique names the
recipe already knows; the field path (stages[0].size=32) stays the variant's key and shows on hover."""
from __future__ import annotations

import json
import re

_STAGE = re.compile(r"stages\[(\d+|\*)\]\.(\w+)")
DIGITS = 3  # significant digits people read a searched or swept number to (0.00229, not 0.0022881136684755237)
NORMALIZE = {"none": "no normalization", "imagenet": "ImageNet normalization", "dataset": "dataset normalization"}


def fmt_lr(value) -> str:
    """A learning rate the way people write it, to 3 significant digits: 1.2e-3, 2.29e-3, 0.01."""
    v = float(value)
    if 1e-2 <= v < 10:
        return f"{v:.{DIGITS}g}"
    mantissa, exponent = f"{v:.{DIGITS - 1}e}".split("e")
    return f"{mantissa.rstrip('0').removesuffix('.')}e{int(exponent)}"


def fmt_number(value) -> str:
    """A number as people write it: whole numbers whole, others to 3 significant digits (0.2, 0.0734, 1e-05)."""
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.{DIGITS}g}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _num(value) -> str:
    """A number as people write it; anything else as the recipe file would spell it."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return fmt_number(value)
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


def _stage_change(i: int | None, field: str, value, base: dict) -> str:
    """One stage field's new value in words (i None: every stage); 'in stage n' only when the recipe has more than
    one stage."""
    stages = base.get("stages") or []
    where = "" if len(stages) <= 1 else " in every stage" if i is None else f" in stage {i + 1}"
    olds = [s.get(field) for s in stages] if i is None else [stages[i].get(field)] if i < len(stages) else []
    old = olds[0] if olds and all(o == olds[0] for o in olds) else None
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
        return f"{field} {_num(value)} px{where}"
    if field == "bs":
        return f"batch size {_num(value)}{where}"
    return f"{field} {_num(value)}{where}"


def describe_change(path: str, value, base: dict) -> str:
    """One overridden field in words, e.g. 'label smoothing 0.1', 'no TTA', 'no MixUp in stage 2'."""
    stage = _STAGE.fullmatch(path)
    if stage:
        return _stage_change(None if stage[1] == "*" else int(stage[1]), stage[2], value, base)
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
    return f"{path.replace('_', ' ').replace('.', ' ')} {_num(value)}"


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


def variant_name(variant: dict, base: dict) -> str:
    """A sweep variant as its runs are named: its words, after "trial n: " for a search's winner."""
    words = variant_words(variant.get("overrides") or {}, base)
    return f"trial {variant['trial']}: {words}" if variant.get("trial") is not None else words


FIELD_WORDS = {"lr": "learning rate", "mixup": "MixUp α", "bs": "batch size", "size": "image size",
               "presize": "presize", "epochs": "epochs", "freeze": "frozen", "label_smoothing": "label smoothing",
               "tta": "TTA", "keep_best": "keep best by", "normalize": "normalization"}


def field_title(path: str, base: dict) -> str:
    """A searched or compared field's name in words: 'learning rate', 'size (px) in stage 1', 'augment max rotate'."""
    stage = _STAGE.fullmatch(path)
    if not stage:
        return FIELD_WORDS.get(path, path.replace("_", " ").replace(".", " "))
    many = len(base.get("stages") or []) > 1
    where = "" if not many else " in every stage" if stage[1] == "*" else f" in stage {int(stage[1]) + 1}"
    return FIELD_WORDS.get(stage[2], stage[2].replace("_", " ")) + where
