"""pandas views of what the API returns: runs, epochs, compare and sweep reports. pandas is imported only here,
on first use (`pip install 'fitboard[client]'` brings it)."""
from __future__ import annotations

from fitboard.recipe_paths import flatten

RUN_COLUMNS = ("id", "name", "kind", "status", "dataset", "created_at", "started_at", "finished_at", "duration",
               "worker", "attempt", "best_accuracy", "tta_accuracy", "sweep_id", "archived")
RESULT_METRICS = ("valid_loss", "accuracy", "error_rate")


def pandas():
    """The pandas module, or an ImportError saying how to get it."""
    try:
        import pandas
    except ImportError as exc:  # the client works without it; only tables need it
        raise ImportError("tables need pandas: pip install 'fitboard[client]'") from exc
    return pandas


def run_row(run: dict) -> dict:
    """One run as a table row: its own columns, the recipe's fields flattened, the result's metrics."""
    row = {c: run.get(c) for c in RUN_COLUMNS}
    row["tags"] = ",".join(run.get("tags") or [])
    for path, value in flatten({k: v for k, v in (run.get("spec") or {}).items()
                                if k not in ("name", "dataset", "tracked")}).items():
        row[path] = value
    result = run.get("result") or {}
    metrics = result.get("metrics") or {}
    for m in RESULT_METRICS:
        row[m] = metrics.get(m)
    tta = result.get("tta") or {}
    row["tta_error_rate"] = tta.get("error_rate")
    best = result.get("best") or {}
    row["best_stage"] = best["stage"] + 1 if best else None  # 1-based, as the pages show it
    row["best_epoch"] = best["epoch"] + 1 if best else None
    row["images_per_second"] = result.get("images_per_second")
    row["error"] = run.get("error")
    return row


def runs_frame(runs: list[dict]):
    """One row per run, indexed by id."""
    pd = pandas()
    frame = pd.DataFrame([run_row(r) for r in runs])
    if frame.empty:
        return pd.DataFrame(columns=[*RUN_COLUMNS, "tags"]).set_index("id")
    for col in ("created_at", "started_at", "finished_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
    return frame.set_index("id")


def epochs_frame(rows: list[dict]):
    """The epoch table, stage and epoch 1-based like the pages, one column per metric."""
    pd = pandas()
    out = [{"stage": r["stage"] + 1, "epoch": r["epoch"] + 1, "train_loss": r.get("train_loss"),
            "valid_loss": r.get("valid_loss"), **(r.get("metrics") or {}), "seconds": r.get("seconds")}
           for r in rows]
    return pd.DataFrame(out, columns=None if out else ["stage", "epoch", "train_loss", "valid_loss", "seconds"])


def compare_frame(doc: dict):
    """The compare page's final table: one row per run (index id), values, differences to the baseline, and the
    recipe fields that differ between the runs."""
    pd = pandas()
    rows = []
    for r in doc["runs"]:
        row = {"id": r["id"], "name": r["name"], "status": r["status"], "baseline": r["id"] == doc["baseline"],
               **{k: r.get(k) for k in ("accuracy", "tta_accuracy", "best_epoch", "wall_seconds",
                                        "images_per_second")},
               **{f"diff_{k}": v for k, v in (r.get("diff") or {}).items()}}
        for path, values in doc.get("config_diff", {}).items():
            if path != "name":
                row[path] = values.get(str(r["id"]), values.get(r["id"]))
        rows.append(row)
    return pd.DataFrame(rows).set_index("id")


def curves_frame(doc: dict):
    """Every run's curves from a compare document, long form: id, name, x (cumulative epoch, 1-based), series."""
    pd = pandas()
    rows = []
    for r in doc["runs"]:
        c = r.get("curves") or {}
        for i, x in enumerate(c.get("x", [])):
            rows.append({"id": r["id"], "name": r["name"], "epoch": x + 1,
                         **{k: c[k][i] for k in ("train_loss", "valid_loss", "accuracy", "error_rate") if k in c}})
    return pd.DataFrame(rows)


def sweep_frame(report: dict):
    """One row per variant: runs, mean and std of accuracy, the seed-paired difference to base and the verdict."""
    pd = pandas()
    rows = []
    for v in report["variants"]:
        acc, tta, diff = v.get("accuracy") or {}, v.get("tta_accuracy") or {}, v.get("diff_accuracy") or {}
        rows.append({"variant": v["key"], "label": v.get("label"), "runs": len(v.get("runs") or []),
                     "seeds": [r["seed"] for r in v.get("runs") or []], "accuracy_mean": acc.get("mean"),
                     "accuracy_std": acc.get("std"), "tta_accuracy_mean": tta.get("mean"),
                     "diff_accuracy": diff.get("mean"), "diff_low": diff.get("low"), "diff_high": diff.get("high"),
                     "paired_seeds": diff.get("n"), "verdict": v.get("verdict")})
    return pd.DataFrame(rows).set_index("variant")
