"""Recipe builders shared by the tests."""
from __future__ import annotations

import copy

TOKEN = "s3cret-0123456789abcdef-0123456789abcdef"  # an API token of the 32+ characters the server insists on
BEARER = {"Authorization": f"Bearer {TOKEN}"}

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


def finish_by_hand(engine, run_id: int, acc: float, tta: float | None = None, epochs: int = 2, predictions=None,
                   home=None, labels=("a", "b"), lr_find: bool = False, speed: dict | None = None) -> None:
    """Put a stored run through claim -> (LR finder) -> epochs -> succeeded with a given accuracy, without training;
    predictions go into the default artifact store of FITBOARD_HOME=home; speed: a SpeedReport's fields."""
    import csv

    from fitboard.app.core.artifacts import open_store
    from fitboard.app.core.events import EpochEvent, LRFindEvent, ResultEvent
    from fitboard.app.store.db import session_scope
    from fitboard.app.store.runs import claim_run, finish_run, record_epoch, record_lr_find

    with session_scope(engine) as s:
        claim_run(s, run_id, "w")
        if lr_find:
            record_lr_find(s, run_id, LRFindEvent(stage=0, suggestion=1e-3, lrs=[1e-5, 1e-4, 1e-3, 1e-2],
                                                   losses=[2.3, 2.0, 1.2, 3.5]))
        for e in range(epochs):
            record_epoch(s, run_id, EpochEvent(stage=e // 2, epoch=e % 2, train_loss=1.0 - e / 10, valid_loss=0.9,
                                               metrics={"accuracy": acc - 0.01 * (epochs - 1 - e),
                                                        "error_rate": 1 - acc},
                                               seconds=2.0))
    result = {"metrics": {"valid_loss": 0.5, "accuracy": acc, "error_rate": 1 - acc},
              "tta": {"n": 1, "use_max": False, "accuracy": tta, "error_rate": 1 - tta} if tta is not None else None,
              "best": {"stage": 0, "epoch": 1, "metric": "accuracy", "value": acc}, "images_per_second": 100.0 * acc,
              "confusion": {"labels": list(labels), "matrix": [[3, 1], [0, 4]]}, "speed": speed}
    stored = {}
    if predictions is not None:
        path = home / f"pred-{run_id}.csv"
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["image_id", "actual", "predicted", "correct", "loss"])
            for image_id, actual, predicted in predictions:
                w.writerow([image_id, actual, predicted, int(actual == predicted), "0.1"])
        stored["predictions"] = open_store(str(home / "artifacts")).put(run_id, "predictions", path, move=True)
    with session_scope(engine) as s:
        finish_run(s, run_id, ResultEvent(**result), artifacts=stored)


def train_and_store(home, spec, data_root) -> tuple[str, int]:
    """A migrated SQLite database under home holding one run trained for real (in this process) and finished as a
    worker finishes it: model and predictions in the default artifact store. (database URL, run id)."""
    from pathlib import Path

    from fitboard.app.core.artifacts import open_store
    from fitboard.app.store.db import make_engine, session_scope, upgrade
    from fitboard.app.store.runs import claim_run, create_run, finish_run
    from fitboard.worker.engine import run_recipe
    from fitboard.worker.reporters import ListReporter

    url = f"sqlite:///{home / 'fitboard.db'}"
    upgrade(url)
    engine = make_engine(url)
    with session_scope(engine) as session:
        run_id = create_run(session, spec.model_dump(mode="json"), techniques=spec.techniques()).id
        claim_run(session, run_id, "test:1")
    result = run_recipe(spec, ListReporter(), data_root, home / "work", num_workers=0)
    store = open_store(str(home / "artifacts"))
    sizes = {kind: store.put(run_id, kind, Path(path), move=True)
             for kind, path in (("model", result.model_path), ("predictions", result.predictions_path))}
    with session_scope(engine) as session:
        finish_run(session, run_id, result, artifacts=sizes)
    engine.dispose()
    return url, run_id
