"""The compare page: runs side by side against a baseline (charts fetch their series from the API)."""
from __future__ import annotations

import re
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request

from fitboard.app.core.errors import RecipeError
from fitboard.app.core.schemas import MAX_ID
from fitboard.app.core.variant_words import describe_change, field_title
from fitboard.app.pages.render import render
from fitboard.app.pages.wording import COLORS, DASHES, describe_stage, is_number, secs, show
from fitboard.app.services import error_images
from fitboard.app.services.compare import compare
from fitboard.app.web.access import needs
from fitboard.app.web.deps import ArtifactsDep, SessionDep, SettingsDep
from fitboard.app.web.docs import webgl_charts

router = APIRouter()
MAX_CONFUSIONS = 12

# The final table's columns: value format, difference format, whether higher is better, and the difference that
# still reads as none (wall time is measured in whole seconds, speed to a tenth).
COLUMNS = (("accuracy", lambda v: f"{100 * v:.2f}%", lambda d: f"{100 * d:+.2f} pts", True, 1e-9),
           ("tta_accuracy", lambda v: f"{100 * v:.2f}%", lambda d: f"{100 * d:+.2f} pts", True, 1e-9),
           ("wall_seconds", secs, lambda d: ("+" if d > 0 else "−") + secs(d), False, 0.5),
           ("images_per_second", lambda v: f"{v:.1f}", lambda d: f"{d:+.1f}", True, 0.05))


def _delta(d, fmt, higher_is_better: bool, tol: float) -> dict:
    """A difference to the baseline with a class saying whether it is an improvement."""
    if not is_number(d):
        return {"text": "–", "cls": "muted"}
    if abs(d) < tol:
        return {"text": "±0", "cls": "muted"}
    return {"text": fmt(d), "cls": "better" if (d > 0) == higher_is_better else "worse"}


TIMED = ("wall_seconds", "images_per_second")  # a run cut short (cancelled, failed) has times that compare nothing
BEST_EPOCH = re.compile(r"stage (\d+) · epoch (\d+)")


def _best_epoch_key(text) -> int | None:
    """'stage 2 · epoch 3' as a number that sorts in training order (the table sorts by it)."""
    m = BEST_EPOCH.fullmatch(text or "")
    return int(m[1]) * 1_000_000 + int(m[2]) if m else None


def dash_of(i: int) -> int:
    """The dash style (index into DASHES) of the i-th run's line: the next one each time the palette comes round."""
    return i // len(COLORS) % len(DASHES)


def table_rows(data: dict) -> list[dict]:
    """The final table: each run's values and its differences to the baseline run, as display text; a run that did
    not succeed (or a baseline that did not) gets its time differences greyed out, never coloured better or worse."""
    base_done = next(r["status"] for r in data["runs"] if r["id"] == data["baseline"]) == "succeeded"
    rows = []
    for i, r in enumerate(data["runs"]):
        done = r["status"] == "succeeded"
        cells = []
        for key, fmt, dfmt, up, tol in COLUMNS:
            delta = _delta(r["diff"][key], dfmt, up, tol)
            if key in TIMED and not (done and base_done) and delta["cls"] != "muted":
                delta = {"text": delta["text"] + (f" ({r['status']})" if not done else " (baseline unfinished)"),
                         "cls": "muted"}
            cells.append((fmt(r[key]) if is_number(r[key]) else "–", delta, r[key] if is_number(r[key]) else None))
        rows.append({"id": r["id"], "name": r["name"], "status": r["status"], "color": COLORS[i % len(COLORS)],
                     "dash": dash_of(i), "best_epoch_key": _best_epoch_key(r["best_epoch"]),
                     "baseline": r["id"] == data["baseline"], "best_epoch": r["best_epoch"] or "–",
                     "finished_ok": done, "cells": cells})
    return rows


WHOLE_STAGE = re.compile(r"stages\[(\d+)\]")
ABSENT = "—"


def _diff_cell(path: str, value) -> str:
    """A recipe value for the diff table in words ('label smoothing 0.1', 'LR finder'); a whole stage (one only some
    runs have) in words, its absence as a dash."""
    stage = WHOLE_STAGE.fullmatch(path)
    if stage:
        if not isinstance(value, dict):
            return ABSENT
        try:
            return describe_stage(int(stage[1]), value)
        except (KeyError, TypeError, ValueError):  # a tracked run's stage may lack fields a recipe always has
            return show(value)
    if path == "name":
        return show(value)
    # An empty base: the row's title already says which stage, so a cell needs no "in stage n".
    return describe_change(path, value, {})


def _diff_title(path: str) -> str:
    """A diff row's field in words: 'learning rate in stage 2', 'label smoothing', 'stage 3'."""
    stage = WHOLE_STAGE.fullmatch(path)
    if stage:
        return f"stage {int(stage[1]) + 1}"
    return field_title(path, {"stages": [{}, {}]} if path.startswith("stages[") else {})


def recipe_diff_rows(config_diff: dict, ids: list[int], baseline: int) -> list[tuple[str, str, list[tuple[str, bool]]]]:
    """(field in words, field path, [(value in words, differs from the baseline's)] per run) for the recipe
    differences table."""
    rows = []
    for path, vals in config_diff.items():
        texts = {i: _diff_cell(path, vals.get(i)) for i in ids}
        rows.append((_diff_title(path), path, [(texts[i], texts[i] != texts[baseline]) for i in ids]))
    return rows


@router.get("/compare")
@needs("read")
def get_compare(request: Request, session: SessionDep, settings: SettingsDep, files: ArtifactsDep,
                ids: list[str] = Query([]), baseline: str = "", offset: int = Query(0, ge=0, le=MAX_ID)):
    """Runs side by side: curves, LR finders, final table against a baseline, recipe diff, confusions, disagreements."""
    joined = ",".join(ids)  # ids=3,5,8 from links, ids=3&ids=5 from the runs list's checkboxes without JS
    if len([x for x in joined.split(",") if x.strip()]) < 2:
        return render(request, "compare.html", data=None, message="Pick two or more runs on the runs list to compare.")
    try:
        # No chart series here: compare.js fetches them from the API, so this page stays small and quick.
        data = compare(session, joined, int(baseline) if baseline.strip().isdecimal() else None, curves=False,
                       files=files, offset=offset)
    except RecipeError as exc:
        return render(request, "compare.html", 422, data=None, message=exc.problems[0]["msg"])
    id_list = data["ids"]
    names = {r["id"]: r["name"] for r in data["runs"]}
    diff = recipe_diff_rows(data["config_diff"], id_list, data["baseline"])
    # Side by side only works for a handful: past MAX_CONFUSIONS the page would be megabytes of tables.
    confusions = [(r, COLORS[i % len(COLORS)]) for i, r in enumerate(data["runs"]) if r["confusion"]]
    shown = confusions[:MAX_CONFUSIONS]
    ids_text = ",".join(map(str, id_list))
    chart_data = {"colors": COLORS, "dashes": DASHES, "webgl": webgl_charts(settings),
                  "api": "/api/v1/compare?" + urlencode({"ids": ids_text, "baseline": data["baseline"]})}
    dis = data["disagreements"]
    shown_ids = [d["image_id"] for d in (dis["a_right_b_wrong"] + dis["b_right_a_wrong"])] if dis else []
    thumbs = error_images.image_links(session, data["runs"][0]["dataset"], shown_ids, settings.data_root)
    pages = {k: urlencode({"ids": ids_text, "baseline": data["baseline"], "offset": v}) for k, v in (
        ("prev", max(offset - dis["page_size"], 0)), ("next", offset + dis["page_size"]))} if dis else {}
    return render(request, "compare.html", data=data, chart=chart_data, rows=table_rows(data), diff=diff,
                  thumbs=thumbs, dis_pages=pages,
                  confusions=shown, confusions_total=len(confusions), names=names, ids_text=ids_text, message=None,
                  csv_url="/api/v1/compare?" + urlencode({"ids": ids_text, "baseline": data["baseline"],
                                                          "format": "csv"}))
