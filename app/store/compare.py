"""Runs side by side: curves, a final table with differences to a baseline, the recipe diff, confusion matrices."""
from __future__ import annotations

import csv
import io
from collections import defaultdict

from sqlalchemy import select
from sqlmodel import Session

from fitboard.app.core.artifacts import ArtifactStore
from fitboard.app.core.csvsafe import csv_row
from fitboard.app.core.errors import RunNotFound
from fitboard.app.core.numbering import where
from fitboard.app.store.models import Artifact, EpochRow, LRFind, Run
from fitboard.recipe_paths import flatten

TABLE_COLUMNS = ("accuracy", "tta_accuracy", "best_epoch", "wall_seconds", "images_per_second")
MAX_DISAGREEMENTS = 60


def _flat_recipe(spec: dict, shared_stages: int) -> dict:
    """flatten(spec), except that a stage past the first shared_stages (one the other runs lack) stays whole under
    stages[i]: one added stage is one difference, not one row per field against nothing."""
    flat = flatten(spec)
    for i, stage in enumerate((spec.get("stages") or [])[shared_stages:], start=shared_stages):
        prefix = f"stages[{i}]."
        flat = {p: v for p, v in flat.items() if not p.startswith(prefix)}
        flat[f"stages[{i}]"] = stage
    return flat


def config_diff(runs: list[Run]) -> dict[str, dict[int, object]]:
    """Only the recipe fields whose values differ between the runs (name and seed included when they differ); a stage
    only some runs have is one entry, stages[i], holding the whole stage (None where a run lacks it)."""
    shared = min((len(r.spec.get("stages") or []) for r in runs), default=0)
    flat = {r.id: _flat_recipe(r.spec, shared) for r in runs}
    paths = sorted({p for f in flat.values() for p in f})
    missing = object()
    return {p: {rid: f.get(p) for rid, f in flat.items()} for p in paths
            if len({repr(f.get(p, missing)) for f in flat.values()}) > 1}


CURVES = ("train_loss", "valid_loss", "accuracy", "error_rate")
LR_POINTS = 60  # per overlaid LR-finder curve: enough to see the valley, light enough for 100 runs on one chart


def _thin(values: list) -> list:
    """Every k-th point (and the last) so a curve has at most LR_POINTS points; the run page keeps all of them."""
    if len(values) <= LR_POINTS:
        return values
    step = -(-len(values) // LR_POINTS)
    return values[::step] + ([values[-1]] if (len(values) - 1) % step else [])


def _curves(rows: list[tuple]) -> dict:
    """One run's series against the cumulative epoch, and where each new stage starts.

    rows are (stage, train_loss, valid_loss, accuracy, error_rate) tuples in epoch order."""
    columns = list(zip(*rows)) or [()] * 5
    stages = columns[0]
    return {"x": list(range(len(rows))),
            "stage_starts": [i for i, s in enumerate(stages) if i == 0 or s != stages[i - 1]],
            **{name: list(col) for name, col in zip(CURVES, columns[1:])}}


def _row(run: Run) -> dict:
    """The final-table values of a run."""
    result = run.result or {}
    best = result.get("best")
    return {"accuracy": run.best_accuracy, "tta_accuracy": run.tta_accuracy,
            "best_epoch": where(best["stage"], best["epoch"]) if best else None,
            "wall_seconds": run.duration, "images_per_second": result.get("images_per_second")}


def _with_diffs(rows: dict[int, dict], baseline: int) -> dict[int, dict]:
    """Each numeric value's difference to the baseline run's."""
    base = rows[baseline]
    for row in rows.values():
        row["diff"] = {k: (row[k] - base[k]) if isinstance(row[k], (int, float)) and isinstance(base[k], (int, float))
                       else None for k in TABLE_COLUMNS if k != "best_epoch"}
    return rows


def _predictions(files: ArtifactStore | None, run_id: int) -> dict[str, tuple[str, str, bool]]:
    """image_id -> (actual, predicted, correct) from a run's predictions.csv in the artifact store."""
    text = files.read_text(run_id, "predictions") if files is not None else None
    if not text:
        return {}
    return {r["image_id"]: (r["actual"], r["predicted"], r["correct"] == "1")
            for r in csv.DictReader(io.StringIO(text, newline=""))}


def cell_images(files: ArtifactStore | None, run_id: int, actual: str, predicted: str) -> list[str] | None:
    """The validation images of one confusion-matrix cell (actual, predicted), in validation order; None without a
    predictions file."""
    rows = _predictions(files, run_id)
    if not rows:
        return None
    return [i for i, (a, p, _) in rows.items() if a == actual and p == predicted]


def disagreements(a: Run, b: Run, files: ArtifactStore | None, offset: int = 0) -> dict | None:
    """Validation images one run gets right and the other wrong, both ways (needs both prediction files); a page of
    MAX_DISAGREEMENTS from offset each way."""
    pa, pb = _predictions(files, a.id), _predictions(files, b.id)
    if not pa or not pb:
        return None
    common = sorted(set(pa) & set(pb))
    a_only = [{"image_id": i, "actual": pa[i][0], "a_predicted": pa[i][1], "b_predicted": pb[i][1]}
              for i in common if pa[i][2] and not pb[i][2]]
    b_only = [{"image_id": i, "actual": pa[i][0], "a_predicted": pa[i][1], "b_predicted": pb[i][1]}
              for i in common if pb[i][2] and not pa[i][2]]
    page = slice(offset, offset + MAX_DISAGREEMENTS)
    return {"a": a.id, "b": b.id, "a_right_b_wrong": a_only[page], "a_right_b_wrong_count": len(a_only),
            "b_right_a_wrong": b_only[page], "b_right_a_wrong_count": len(b_only), "offset": offset,
            "page_size": MAX_DISAGREEMENTS}


def compare_runs(session: Session, ids: list[int], baseline: int | None = None, curves: bool = True,
                 files: ArtifactStore | None = None, offset: int = 0) -> dict:
    """Everything the compare page shows, in three queries; curves=False leaves out the chart series (and
    says only which runs have LR-finder curves), for the HTML page whose charts fetch the JSON API."""
    runs_by_id = {r.id: r for r in session.exec(select(Run).where(Run.id.in_(ids))).scalars()}
    missing = [i for i in ids if i not in runs_by_id]
    if missing:
        raise RunNotFound(missing[0])
    runs = [runs_by_id[i] for i in ids]
    # The oldest run by default: lists send ids newest first, and the newer variant is what is being judged.
    baseline = baseline if baseline in runs_by_id else min(runs, key=lambda r: (r.created_at, r.id)).id
    epochs, finds = defaultdict(list), defaultdict(list)
    if not curves:
        with_finds = set(session.exec(select(LRFind.run_id).where(LRFind.run_id.in_(ids)).distinct()).scalars())
        return _assemble(session, runs, baseline, {}, {i: [{"stage": None}] for i in with_finds}, files,
                         curves=False, offset=offset)
    # Plain column rows, not ORM objects: 100 runs x 50 epochs would spend most of the time building instances.
    # The two metrics come out of the JSON column in SQL (json_extract / ->>), not through 5,000 json.loads.
    for r in session.exec(select(EpochRow.run_id, EpochRow.stage, EpochRow.train_loss, EpochRow.valid_loss,
                                 EpochRow.metrics["accuracy"].as_float().label("accuracy"),
                                 EpochRow.metrics["error_rate"].as_float().label("error_rate"))
                          .where(EpochRow.run_id.in_(ids)).order_by(
            EpochRow.run_id, EpochRow.stage, EpochRow.epoch)):  # a Row unpacks like a tuple
        epochs[r[0]].append(r[1:])
    for f in session.exec(select(LRFind.run_id, LRFind.stage, LRFind.suggestion, LRFind.lrs, LRFind.losses)
                          .where(LRFind.run_id.in_(ids)).order_by(LRFind.run_id, LRFind.stage)):
        lrs, losses = _thin(f.lrs or []), _thin(f.losses or [])
        finds[f.run_id].append({"stage": f.stage, "suggestion": f.suggestion, "lrs": lrs, "losses": losses})
    return _assemble(session, runs, baseline, epochs, finds, files, offset=offset)


def _assemble(session: Session, runs: list[Run], baseline: int, epochs: dict, finds: dict,
              files: ArtifactStore | None, curves: bool = True, offset: int = 0) -> dict:
    """The compare document from loaded runs, epoch tuples and LR-finder curves."""
    ids = [r.id for r in runs]
    rows = _with_diffs({r.id: _row(r) for r in runs}, baseline)
    out = {"ids": ids, "baseline": baseline, "config_diff": config_diff(runs),
           "runs": [{"id": r.id, "name": r.name, "status": str(r.status), "kind": r.kind, "dataset": r.dataset,
                     "techniques": r.techniques or [], **rows[r.id], "lr_finds": finds.get(r.id, []),
                     **({"curves": _curves(epochs.get(r.id, []))} if curves else {}),
                     "confusion": (r.result or {}).get("confusion"),
                     "speed": (r.result or {}).get("speed")} for r in runs],
           "disagreements": None}
    if len(runs) == 2:
        with_predictions = set(session.exec(select(Artifact.run_id).where(
            Artifact.run_id.in_(ids), Artifact.kind == "predictions")).scalars())
        if with_predictions == set(ids):
            out["disagreements"] = disagreements(runs[0], runs[1], files, offset)
    return out


def compare_csv(data: dict) -> str:
    """The final table as CSV: one line per run, values and differences to the baseline."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    diffs = [c for c in TABLE_COLUMNS if c != "best_epoch"]
    writer.writerow(["id", "name", "baseline", *TABLE_COLUMNS, *(f"diff_{c}" for c in diffs)])
    for r in data["runs"]:
        writer.writerow(csv_row([r["id"], r["name"], int(r["id"] == data["baseline"]), *(r[c] for c in TABLE_COLUMNS),
                                 *(r["diff"][c] for c in diffs)]))
    return buf.getvalue()
