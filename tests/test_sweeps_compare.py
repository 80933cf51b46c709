"""Sweeps and the compare API on a real migrated database (runs finished by hand, no training)."""
from __future__ import annotations

import json
from statistics import mean, stdev

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlmodel import select

from fitboard.app.core.schemas import parse_spec
from fitboard.app.core.settings import Settings
from fitboard.app.core.stats import t_ppf
from fitboard.app.core.sweep_plan import plan_variants, set_path
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import Run, Sweep
from fitboard.app.web.app import create_app
from tests.helpers import finish_by_hand, tiny_recipe
from tests.store_fixtures import *  # noqa: F401,F403


@pytest.fixture
def client(tmp_path, sqlite_url, data_root):
    with TestClient(create_app(Settings(home=tmp_path, database_url=sqlite_url, data_root=data_root))) as c:
        yield c


@pytest.fixture
def engine(sqlite_engine):
    """The test's migrated SQLite copy (store_fixtures), under a short name."""
    return sqlite_engine


def two_stage_recipe() -> dict:
    recipe = tiny_recipe(name="abl", tta={"n": 1})
    recipe["stages"].append({"epochs": 1, "size": 40, "presize": 48, "bs": 32, "lr": [1e-4, 1e-3], "mixup": 0.2})
    return recipe


def finish(engine, run_id: int, acc: float, tta: float | None = None, epochs: int = 2, predictions=None, home=None):
    """Put a run through claim -> epochs -> succeeded with the given final accuracy."""
    finish_by_hand(engine, run_id, acc, tta, epochs, predictions, home)


def test_plan_variants_one_at_a_time_and_grid():
    base = parse_spec(two_stage_recipe()).model_dump(mode="json")  # as stored: every field present
    one = plan_variants(base, {"label_smoothing": [None, 0.1], "stages[1].mixup": [None]}, "one_at_a_time")
    assert [v["overrides"] for v in one] == [{}, {"label_smoothing": 0.1}, {"stages[1].mixup": None}]
    grid = plan_variants(base, {"label_smoothing": [None, 0.1], "normalize": ["dataset", "none"]}, "grid")
    assert len(grid) == 4 and grid[0]["label"] == "base"
    assert set_path(base, "stages[1].mixup", None)["stages"][1]["mixup"] is None and base["stages"][1]["mixup"] == 0.2


def test_sweep_queues_variant_times_seed_and_reports_paired_stats(client, engine):
    body = {"base": two_stage_recipe(), "vary": {"label_smoothing": [0.1], "stages[1].mixup": [None]},
            "seeds": [1, 2, 3], "mode": "one_at_a_time"}
    created = client.post("/api/v1/sweeps", json=body)
    assert created.status_code == 201, created.text
    sweep = created.json()
    assert len(sweep["queued"]) == 9 and [v["label"] for v in sweep["variants"]] == [
        "base", "label_smoothing=0.1", "stages[1].mixup=null"]  # the field paths: the keys people type
    assert [v["words"] for v in sweep["variants"]] == ["base", "label smoothing 0.1", "no MixUp in stage 2"]
    with session_scope(engine) as s:
        runs = s.exec(select(Run).where(Run.sweep_id == sweep["id"])).all()
        assert {(r.variant, r.spec["seed"]) for r in runs} == {(v["key"], seed) for v in sweep["variants"]
                                                               for seed in (1, 2, 3)}
        ls_run = next(r for r in runs if r.variant == '{"label_smoothing": 0.1}')
        assert ls_run.spec["label_smoothing"] == 0.1 and "label smoothing" in ls_run.techniques
        ids = {(r.variant, r.spec["seed"]): r.id for r in runs}
    base_acc = {1: 0.80, 2: 0.82, 3: 0.85}
    ls_acc = {1: 0.83, 2: 0.82, 3: 0.88}
    for seed in (1, 2, 3):
        finish(engine, ids[("{}", seed)], base_acc[seed], tta=base_acc[seed] + 0.01)
        finish(engine, ids[('{"label_smoothing": 0.1}', seed)], ls_acc[seed], tta=ls_acc[seed])
    finish(engine, ids[('{"stages[1].mixup": null}', 1)], 0.81)  # one seed only so far
    report = client.get(f"/api/v1/sweeps/{sweep['id']}").json()
    base, ls, mix = report["variants"]
    assert base["accuracy"]["mean"] == pytest.approx(mean(base_acc.values()))
    assert ls["accuracy"]["std"] == pytest.approx(stdev(ls_acc.values()))
    diffs = [ls_acc[s] - base_acc[s] for s in (1, 2, 3)]
    half = t_ppf(0.975, 2) * stdev(diffs) / 3 ** 0.5
    assert ls["diff_accuracy"]["mean"] == pytest.approx(mean(diffs))
    assert ls["diff_accuracy"]["low"] == pytest.approx(mean(diffs) - half)
    assert ls["verdict"].startswith("label smoothing 0.1: +2.0 points, 95% CI")
    assert ls["diff_accuracy"]["clipped"] is False and ls["diff_accuracy"]["note"] is None
    assert ls["verdict"].endswith("not distinguishable from noise")
    assert ls["diff_tta_accuracy"]["mean"] == pytest.approx(mean(diffs) - 0.01)
    assert mix["diff_accuracy"]["n"] == 1 and "add seeds" in mix["verdict"]  # paired by seed: only seed 1 has both
    assert mix["diff_accuracy"]["low"] is None and mix["diff_accuracy"]["note"] == "too few seeds for an interval"
    assert mix["verdict"].startswith("no MixUp in stage 2: +1.0 points over 1 seed: too few seeds for an interval")
    assert report["curves"]["{}"]["n"] == 3 and len(report["curves"]["{}"]["mean"]) == 2
    more = client.post(f"/api/v1/sweeps/{sweep['id']}/seeds", json={"seeds": [4]})
    assert more.status_code == 201 and len(more.json()["queued"]) == 3 and more.json()["seeds"] == [1, 2, 3, 4]
    again = client.post(f"/api/v1/sweeps/{sweep['id']}/seeds", json={"seeds": [4]})
    assert again.status_code == 422 and again.json()["detail"][0]["loc"] == "seeds"


def test_bad_sweeps_are_refused_and_store_nothing(client, engine):
    base, seeds = two_stage_recipe(), [1, 2, 3]
    bad_path = client.post("/api/v1/sweeps", json={"base": base, "vary": {"stages[5].mixup": [0.1]}, "seeds": seeds})
    assert bad_path.status_code == 422 and bad_path.json()["detail"][0]["loc"] == "vary.stages[5].mixup"
    bad_value = client.post("/api/v1/sweeps", json={"base": base, "vary": {"label_smoothing": [2.0]}, "seeds": seeds})
    assert bad_value.status_code == 422 and "label_smoothing" in json.dumps(bad_value.json())
    bad_seeds = client.post("/api/v1/sweeps", json={"base": base, "vary": {"label_smoothing": [0.1]},
                                                    "seeds": [1, 1, 2]})
    assert bad_seeds.status_code == 422
    for few in ([1], [1, 2]):  # no interval could come of it: refused, naming the field
        r = client.post("/api/v1/sweeps", json={"base": base, "vary": {"label_smoothing": [0.1]}, "seeds": few})
        assert r.status_code == 422, r.text
        (problem,) = r.json()["detail"]
        assert problem["loc"] == "seeds" and "at least 3 seeds" in problem["msg"]
        assert problem["msg"].endswith(f"got {len(few)}")
    assert client.get("/api/v1/sweeps/99").status_code == 404
    with session_scope(engine) as s:
        assert s.exec(select(func.count()).select_from(Run)).one() == 0
        assert s.exec(select(func.count()).select_from(Sweep)).one() == 0


def test_compare_api_table_diff_curves_and_disagreements(client, engine, tmp_path):
    a = client.post("/api/v1/runs", json=tiny_recipe(name="plain")).json()["id"]
    b = client.post("/api/v1/runs", json=tiny_recipe(name="smoothed", label_smoothing=0.1)).json()["id"]
    finish(engine, a, 0.80, tta=0.81, epochs=3, home=tmp_path,
           predictions=[("1.jpg", "a", "a"), ("2.jpg", "b", "a"), ("3.jpg", "b", "b"), ("4.jpg", "a", "a")])
    finish(engine, b, 0.85, tta=0.86, epochs=3, home=tmp_path,
           predictions=[("1.jpg", "a", "b"), ("2.jpg", "b", "b"), ("3.jpg", "b", "b"), ("4.jpg", "a", "a")])
    data = client.get("/api/v1/compare", params={"ids": f"{a},{b}", "baseline": a}).json()
    assert data["baseline"] == a and [r["id"] for r in data["runs"]] == [a, b]
    ra, rb = data["runs"]
    assert rb["diff"]["accuracy"] == pytest.approx(0.05) and ra["diff"]["accuracy"] == 0
    assert rb["diff"]["images_per_second"] == pytest.approx(5.0) and rb["best_epoch"] == "stage 1 · epoch 2"
    assert ra["curves"]["x"] == [0, 1, 2] and ra["curves"]["stage_starts"] == [0, 2]
    assert set(data["config_diff"]) == {"name", "label_smoothing"}
    assert data["config_diff"]["label_smoothing"] == {str(a): None, str(b): 0.1}
    d = data["disagreements"]
    assert [x["image_id"] for x in d["a_right_b_wrong"]] == ["1.jpg"]
    assert [x["image_id"] for x in d["b_right_a_wrong"]] == ["2.jpg"]
    assert ra["confusion"]["labels"] == ["a", "b"]
    table = client.get("/api/v1/compare", params={"ids": f"{a},{b}", "format": "csv"}).text.splitlines()
    assert table[0].startswith("id,name,baseline,accuracy") and len(table) == 3
    assert client.get("/api/v1/compare", params={"ids": f"{a},999"}).status_code == 404
    assert client.get("/api/v1/compare", params={"ids": "x,y"}).status_code == 422


def test_variants_are_named_in_words_from_the_techniques_the_recipe_knows():
    from fitboard.app.core.variant_words import variant_words

    base = parse_spec(two_stage_recipe()).model_dump(mode="json")  # stages at 32 then 40 px: progressive resizing
    base["stages"][0]["lr"] = "find"
    words = {path: variant_words({path: value}, base) for path, value in [
        ("stages[0].size", 40), ("stages[1].mixup", None), ("stages[0].mixup", 0.2), ("label_smoothing", 0.1),
        ("tta", None), ("normalize", "none"), ("keep_best", "accuracy"), ("stages[0].lr", 1e-3),
        ("stages[1].lr", "find"), ("pretrained", True), ("stages[1].epochs", 1)]}
    assert words == {
        "stages[0].size": "without progressive resizing", "stages[1].mixup": "no MixUp in stage 2",
        "stages[0].mixup": "MixUp 0.2 in stage 1", "label_smoothing": "label smoothing 0.1", "tta": "no TTA",
        "normalize": "no normalization", "keep_best": "keep best by accuracy",
        "stages[0].lr": "no LR finder in stage 1 (lr 1e-3)", "stages[1].lr": "LR finder in stage 2",
        "pretrained": "pretrained", "stages[1].epochs": "1 epoch in stage 2"}
    assert variant_words({"stages[0].size": 36}, base) == "size 36 px in stage 1"  # still two sizes: not "without"
    assert variant_words({"label_smoothing": 0.1, "tta": None}, base) == "label smoothing 0.1, no TTA"
    assert variant_words({}, base) == "base"
    one_stage = parse_spec(tiny_recipe()).model_dump(mode="json")
    assert variant_words({"stages[0].mixup": 0.2}, one_stage) == "MixUp 0.2"  # one stage: no "in stage 1"
    odd = {"label_smoothing": "0.1", "stages[0].mixup": [1], "stages[0].lr": "fast", "tta": 3, "normalize": 7,
           "stages[0].size": [32], "stages[9].bs": 8, "augment": {"flip": False}}
    assert variant_words(odd, one_stage) == ("label smoothing 0.1, MixUp [1], lr fast, TTA 3, normalize 7, "
                                             'size [32] px, batch size 8, augment {"flip": false}')  # never a 500


@pytest.mark.parametrize("value,loc", [
    ({"layout": "csv", "path": "/etc"}, "vary.dataset ({'layout': 'csv', 'path': '/etc'}): dataset.path"),
    ({"layout": "tsv"}, "vary.dataset ({'layout': 'tsv'}): layout"),
    (5, "vary (dataset=5): dataset"),
    (None, "vary (dataset=null): dataset"),
])
def test_a_sweep_over_datasets_refuses_a_bad_inline_spec_or_type_naming_it(client, value, loc):
    """Varying `dataset` over anything but a name was a 500: the value went to the registry's query as is."""
    r = client.post("/api/v1/sweeps", json={"base": tiny_recipe(), "vary": {"dataset": [value]}, "seeds": [0, 1, 2]})
    assert r.status_code == 422 and loc in [p["loc"] for p in r.json()["detail"]], r.text
    assert client.get("/api/v1/runs").json()["total"] == 0


def test_a_sweep_may_vary_over_an_inline_dataset(client):
    inline = {"layout": "csv", "path": "digits", "images": "train_images", "label_map": "label_num_to_disease_map.json"}
    r = client.post("/api/v1/sweeps", json={"base": tiny_recipe(), "vary": {"dataset": [inline]}, "seeds": [0, 1, 2]})
    assert r.status_code == 201 and len(r.json()["queued"]) == 6, r.text


def test_too_many_values_for_a_bracketed_field_name_it(client):
    """The location dropped a vary key with brackets: the 422 said only "vary"."""
    r = client.post("/api/v1/sweeps", json={"base": tiny_recipe(), "vary": {"stages[0].lr": [0.1] * 1000},
                                            "seeds": [0, 1, 2]})
    assert r.status_code == 422 and [p["loc"] for p in r.json()["detail"]] == ["vary.stages[0].lr"], r.text


def test_a_repeated_value_is_refused_naming_its_field(client):
    """[0.1, 0.1] made two identical variants, each trained for every seed."""
    for values, shown in (([0.1, 0.1], "0.1"), ([[1e-4, 1e-3], 0.01, [1e-4, 1e-3]], "[0.0001, 0.001]")):
        r = client.post("/api/v1/sweeps", json={"base": tiny_recipe(), "vary": {"stages[0].lr": values},
                                                "seeds": [0, 1, 2]})
        assert r.status_code == 422 and r.json()["detail"] == [
            {"loc": "vary.stages[0].lr", "msg": f"values must be distinct; {shown} repeats"}], r.text
    assert client.get("/api/v1/runs").json()["total"] == 0
    ok = client.post("/api/v1/sweeps", json={"base": tiny_recipe(), "vary": {"stages[0].lr": [0.1, 0.01]},
                                             "seeds": [0, 1, 2]})
    assert ok.status_code == 201 and len(ok.json()["queued"]) == 9, ok.text
