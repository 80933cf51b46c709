"""The compare, ablate and sweep pages on a real migrated SQLite database (runs finished by hand, no training)."""
from __future__ import annotations

import html
import json
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from fitboard.app.core.schemas import parse_spec
from fitboard.app.core.settings import Settings
from fitboard.app.services.compare import MAX_COMPARE
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import Run, Sweep
from fitboard.app.store.runs import create_run
from fitboard.app.web.app import create_app
from tests.helpers import TOKEN, finish_by_hand, tiny_recipe
from tests.store_fixtures import *  # noqa: F401,F403

XSS = "<script>alert(1)</script>"


@pytest.fixture
def client(tmp_path, sqlite_url, data_root):
    app = create_app(Settings(home=tmp_path / "home", database_url=sqlite_url, data_root=data_root))
    with TestClient(app) as c:
        yield c


def engine(client):
    return client.app.state.engine


def csrf(client: TestClient, url: str = "/sweeps") -> str:
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', client.get(url).text)[1]


def two_stage_recipe(**overrides) -> dict:
    recipe = tiny_recipe(name="abl", tta={"n": 1}, **overrides)
    recipe["stages"] = [{"epochs": 1, "size": 24, "presize": 32, "bs": 32, "lr": "find"},
                        {"epochs": 1, "size": 32, "presize": 40, "bs": 32, "lr": [1e-4, 1e-3], "mixup": 0.2}]
    return recipe


def add_run(client, recipe: dict) -> int:
    spec = parse_spec(recipe)
    with session_scope(engine(client)) as s:
        return create_run(s, spec.model_dump(mode="json"), techniques=spec.techniques()).id


def finish(client, run_id: int, acc: float, tta: float | None = None, epochs: int = 2, predictions=None, home=None):
    """Put a run through claim -> LR finder -> epochs -> succeeded with the given final accuracy."""
    finish_by_hand(engine(client), run_id, acc, tta, epochs, predictions, home, labels=("cat<1>", "dog"), lr_find=True)


def embedded(page: str, node_id: str) -> dict:
    return json.loads(re.search(rf'<script type="application/json" id="{node_id}">(.*?)</script>', page, re.S)[1])


def test_compare_page_shows_table_diffs_recipe_diff_confusions_and_disagreements(client, tmp_path):
    a = add_run(client, tiny_recipe(name=XSS))
    b = add_run(client, tiny_recipe(name="smoothed", label_smoothing=0.1))
    finish(client, a, 0.80, tta=0.81, epochs=3, home=tmp_path / "home",
           predictions=[("1.jpg", "cat<1>", "cat<1>"), ("2.jpg", "dog", "cat<1>"), ("3.jpg", "dog", "dog")])
    finish(client, b, 0.85, tta=0.86, epochs=3, home=tmp_path / "home",
           predictions=[("1.jpg", "cat<1>", "dog"), ("2.jpg", "dog", "dog"), ("3.jpg", "dog", "dog")])
    r = client.get(f"/compare?ids={a},{b}&baseline={a}")
    page = r.text
    assert r.status_code == 200
    assert XSS not in page and html.escape(XSS, quote=False) in page and "smoothed" in page
    assert "+5.00 pts" in page and "80.00%" in page and "86.00%" in page  # accuracy diff to the baseline
    assert page.count(">baseline</span>") == 4  # the baseline row's four Δ cells
    assert '<th scope="row" title="label_smoothing">label smoothing</th>' in page  # in words, the path on hover
    assert 'title="arch"' not in page  # only differing fields
    assert page.count('class="confusion"') == 2 and "cat&lt;1&gt;" in page
    assert page.count(" h15\"") == 2  # 3 of 4 cats right (shade step 15 of 20), in each run's matrix
    assert "/api/v1/compare?ids=" in page and "format=csv" in page and "/vendor/plotly.min.js" in page
    dis = page[page.index('id="disagreements"'):]
    assert "<strong>1</strong> image #" in dis and "1.jpg" in dis and "2.jpg" in dis and "3.jpg" not in dis
    meta = embedded(page, "compare-data")  # compare.js fetches the series it draws from this API URL
    data = client.get(meta["api"]).json()  # the JSON survives the <script> name intact
    assert [x["name"] for x in data["runs"]] == [XSS, "smoothed"] and data["baseline"] == a
    assert data["runs"][0]["curves"]["stage_starts"] == [0, 2]
    assert data["runs"][1]["lr_finds"][0]["suggestion"] == 1e-3

    other = client.get(f"/compare?ids={a}&ids={b}&baseline={b}").text  # the runs list's checkboxes, without JS
    assert "-5.00 pts" in other and client.get(embedded(other, "compare-data")["api"]).json()["baseline"] == b


def test_compare_page_without_ids_with_bad_ids_and_unknown_ids(client):
    assert "Pick two or more runs" in client.get("/compare").text
    bad = client.get("/compare?ids=x,y")
    assert bad.status_code == 422 and "comma-separated run ids" in bad.text
    a = add_run(client, tiny_recipe())
    missing = client.get(f"/compare?ids={a},999")
    assert missing.status_code == 404 and "run 999" in missing.text
    over = ",".join(map(str, range(1, MAX_COMPARE + 2)))  # one past the bound: a clear 422, page and API alike
    for url in (f"/compare?ids={over}", f"/api/v1/compare?ids={over}"):
        r = client.get(url)
        assert r.status_code == 422 and f"at most {MAX_COMPARE}; got {MAX_COMPARE + 1}" in r.text, url
    alone = client.get(f"/compare?ids={a}").text  # comparing needs two runs
    assert "Pick two or more runs" in alone and "Where they disagree" not in alone


def test_ablate_form_starts_a_sweep_with_the_ticked_variants(client):
    run_id = add_run(client, two_stage_recipe(keep_best="accuracy"))
    page = client.get(f"/runs/{run_id}/ablate").text
    for key in ("normalize", "label_smoothing", "stages[0].mixup", "stages[1].mixup", "tta", "keep_best",
                "stages[0].size"):
        assert f'name="vary:{key}"' in page, key
    assert "Label smoothing: off → 0.1" in page and "MixUp in stage 2: α=0.2 → off" in page
    token = csrf(client, f"/runs/{run_id}/ablate")
    form = {"csrf_token": token, "vary:label_smoothing": "1", "vary:stages[1].mixup": "1", "vary:tta": "1",
            "seeds": "3", "mode": "one_at_a_time", "name": "abl-sweep"}
    two = client.post(f"/runs/{run_id}/ablate", data={**form, "seeds": "2"})  # no interval could come of it
    assert two.status_code == 422 and "seeds: give a whole number of seeds from 3 to 10" in html.unescape(two.text)
    assert "got '2'" in html.unescape(two.text) and 'name="seeds" min="3" max="10"' in two.text
    assert "fewer than 3 give no confidence interval" in two.text  # the form's hint says the same
    no_token = {k: v for k, v in form.items() if k != "csrf_token"}
    assert client.post(f"/runs/{run_id}/ablate", data=no_token).status_code == 403
    r = client.post(f"/runs/{run_id}/ablate", data=form, follow_redirects=False)
    assert r.status_code == 303 and re.fullmatch(r"/sweeps/\d+", r.headers["location"])
    with session_scope(engine(client)) as s:
        sweep = s.exec(select(Sweep)).scalars().one()
        assert [v["label"] for v in sweep.variants] == ["base", "label_smoothing=0.1", "stages[1].mixup=null",
                                                        "tta=null"]
        assert sweep.seeds == [0, 1, 2] and sweep.base["keep_best"] == "accuracy"
        runs = s.exec(select(Run).where(Run.sweep_id == sweep.id)).scalars().all()
        assert len(runs) == 12 and {r.spec["seed"] for r in runs} == {0, 1, 2}
    shown = client.get(r.headers["location"]).text
    assert "Sweep 1 queued: 12 runs (4 variants × 3 seeds)." in shown and "0 of 12 runs finished" in shown

    assert 'name="priority"' in page and {r.priority for r in runs} == {"normal"}  # the form's default
    urgent = client.post(f"/runs/{run_id}/ablate", data={**form, "priority": "urgent"})
    said = html.unescape(urgent.text)
    assert urgent.status_code == 422 and "priority: priority is one of high, normal, low; got 'urgent'" in said
    grid = client.post(f"/runs/{run_id}/ablate", data={**form, "mode": "grid", "vary:stages[1].mixup": "",
                                                       "vary:stages[0].size": "1", "priority": "low"},
                       follow_redirects=False)
    with session_scope(engine(client)) as s:
        sweep = s.get(Sweep, int(grid.headers["location"].rsplit("/", 1)[1]))
        assert len(sweep.variants) == 8 and {"stages[0].size": 32} in [v["overrides"] for v in sweep.variants]
        assert {r.priority for r in s.exec(select(Run).where(Run.sweep_id == sweep.id)).scalars()} == {"low"}


def test_ablate_form_errors_are_shown_and_nothing_is_stored(client):
    run_id = add_run(client, two_stage_recipe())
    token = csrf(client, f"/runs/{run_id}/ablate")
    r = client.post(f"/runs/{run_id}/ablate", data={"csrf_token": token, "seeds": "0", "mode": "one_at_a_time"})
    assert r.status_code == 422 and "Tick at least one technique" in r.text and "from 3 to 10" in r.text
    long = client.post(f"/runs/{run_id}/ablate", data={"csrf_token": token, "seeds": "3", "vary:tta": "1",
                                                        "name": "n" * 199, "mode": "one_at_a_time"})
    assert long.status_code == 422 and "name:" in long.text  # the runs' names would pass 200 characters
    assert client.get("/runs/999/ablate").status_code == 404
    with session_scope(engine(client)) as s:
        assert s.exec(select(Sweep)).first() is None and len(s.exec(select(Run)).all()) == 1


def test_sweep_page_shows_verdicts_table_curves_and_adds_seeds(client):
    body = {"base": two_stage_recipe(), "vary": {"label_smoothing": [0.1], "stages[1].mixup": [None]},
            "seeds": [1, 2, 3], "mode": "one_at_a_time"}
    sweep = client.post("/api/v1/sweeps", json=body).json()
    with session_scope(engine(client)) as s:
        ids = {(r.variant, r.spec["seed"]): r.id for r in s.exec(select(Run)).scalars()}
    base_acc, ls_acc = {1: 0.80, 2: 0.82, 3: 0.85}, {1: 0.83, 2: 0.82, 3: 0.88}
    for seed in (1, 2, 3):
        finish(client, ids[("{}", seed)], base_acc[seed], tta=base_acc[seed] + 0.01)
        finish(client, ids[('{"label_smoothing": 0.1}', seed)], ls_acc[seed], tta=ls_acc[seed])
    finish(client, ids[('{"stages[1].mixup": null}', 1)], 0.81)
    page = client.get(f"/sweeps/{sweep['id']}").text
    report = client.get(f"/api/v1/sweeps/{sweep['id']}").json()
    ls_ci = report["variants"][1]["diff_accuracy"]
    assert re.search(r"label smoothing 0.1: \+2.0 points, 95% CI -?\d+\.\d to \+\d+\.\d over 3 seeds: "
                     r"not distinguishable from noise", page)
    assert f"95% CI {100 * ls_ci['low']:+.2f} to {100 * ls_ci['high']:+.2f}" in page  # the API's interval
    assert ("no MixUp in stage 2: +1.0 points over 1 seed: too few seeds for an interval (add seeds: 3 at least to "
            "tell it from noise)") in page
    cells = re.findall(r'<span class="variant-words" title="([^"]+)">([^<]+)</span>', page)
    assert cells == [("label_smoothing=0.1", "label smoothing 0.1"), ("stages[1].mixup=null", "no MixUp in stage 2")]
    mix_row = page.split('class="variant-words" title="stages[1].mixup=null">')[1].split("</tr>")[0]
    assert "+1.00 pts" in mix_row and "too few seeds for an interval" in mix_row and "CI" not in mix_row
    assert "82.33% ± 2.52" in page and "+2.00 pts" in page and "7 of 9 runs finished" in page
    assert page.count(">1: succeeded</a>") == 3 and ">2: queued</a>" in page  # every run linked with its status
    data = embedded(page, "sweep-data")
    assert data["live"] and [s["n"] for s in data["series"]] == [3, 3, 1] and len(data["series"][0]["mean"]) == 2
    assert [s["label"] for s in data["series"]] == ["base", "label smoothing 0.1", "no MixUp in stage 2"]
    assert f"/compare?ids={ids[('{}', 1)]}%2C" in page  # compare all its runs, base first
    assert "/static/sweep.js" in page and 'action="/sweeps/%d/seeds"' % sweep["id"] in page

    listing = client.get("/sweeps").text
    assert f'href="/sweeps/{sweep["id"]}">abl</a>' in listing and "7 / 9" in listing

    url = f"/sweeps/{sweep['id']}/seeds"
    assert client.post(url, data={"count": "2"}).status_code == 403
    r = client.post(url, data={"count": "2", "csrf_token": csrf(client)}, follow_redirects=False)
    assert r.status_code == 303
    after = client.get(f"/sweeps/{sweep['id']}").text
    assert "Queued 6 more runs: seeds 4 to 5." in after and "7 of 15 runs finished" in after
    assert client.post(url, data={"count": "0", "csrf_token": csrf(client)}).status_code == 422
    assert client.get("/sweeps/999").status_code == 404


def test_pages_ask_for_a_login_when_a_token_is_configured(tmp_path, sqlite_url, data_root):
    app = create_app(Settings(home=tmp_path / "home", database_url=sqlite_url, data_root=data_root, api_token=TOKEN))
    with TestClient(app) as c:
        for url in ("/compare?ids=1,2", "/sweeps", "/sweeps/1", "/runs/1/ablate"):
            r = c.get(url, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), url


def test_ablate_form_overrides_epochs_per_stage_for_the_whole_sweep(client):
    recipe = two_stage_recipe()
    recipe["stages"][0]["epochs"], recipe["stages"][1]["epochs"] = 15, 30
    run_id = add_run(client, recipe)
    page = client.get(f"/runs/{run_id}/ablate").text
    assert 'name="epochs-0" min="1" max="1000" step="1" value="15"' in page and 'name="epochs-1"' in page
    token = csrf(client, f"/runs/{run_id}/ablate")
    form = {"csrf_token": token, "vary:label_smoothing": "1", "seeds": "3", "mode": "one_at_a_time",
            "epochs-0": "1", "epochs-1": "2"}
    bad = client.post(f"/runs/{run_id}/ablate", data={**form, "epochs-1": "0"})
    assert bad.status_code == 422 and "stage 2 epochs: give a whole number from 1 to 1000" in bad.text
    assert client.post(f"/runs/{run_id}/ablate", data={**form, "epochs-0": "x" * 50}).status_code == 422
    r = client.post(f"/runs/{run_id}/ablate", data=form, follow_redirects=False)
    assert r.status_code == 303
    with session_scope(engine(client)) as s:
        runs = s.exec(select(Run).where(Run.sweep_id.is_not(None))).scalars().all()
        assert len(runs) == 6 and all([st["epochs"] for st in r.spec["stages"]] == [1, 2] for r in runs)
    empty = client.get(r.headers["location"]).text
    assert "Waiting for the first run to finish" in empty and 'id="sweep-chart" aria-label' in empty
    assert re.search(r'<div class="chart" id="sweep-chart"[^>]*hidden', empty)  # no large empty box


def test_an_added_stage_is_one_row_in_words_against_a_dash(client):
    two = tiny_recipe(name="two-stages")
    two["stages"].append({"epochs": 1, "size": 24, "presize": 32, "bs": 32, "lr": 1e-3})
    three = tiny_recipe(name="three-stages")
    three["stages"] = [*two["stages"], {"epochs": 2, "size": 28, "presize": 36, "bs": 16, "lr": [1e-5, 1e-4],
                                        "mixup": 0.2}]
    a, b = add_run(client, two), add_run(client, three)
    data = client.get("/api/v1/compare", params={"ids": f"{a},{b}", "baseline": a}).json()
    assert set(data["config_diff"]) == {"name", "stages[2]"}  # not stages[2].epochs, stages[2].size, ... vs null
    added = data["config_diff"]["stages[2]"]
    assert added[str(a)] is None and added[str(b)]["epochs"] == 2 and added[str(b)]["mixup"] == 0.2
    page = client.get(f"/compare?ids={a},{b}&baseline={a}").text
    table = page[page.index('class="config-diff"'):page.index("</table>", page.index('class="config-diff"'))]
    rows = re.findall(r'<tr><th scope="row" title="([^"]+)">[^<]+</th>(.*?)</tr>', table, re.S)
    assert [path for path, _ in rows] == ["name", "stages[2]"]
    cells = re.findall(r'<td class="([^"]*)">([^<]*)</td>', dict(rows)["stages[2]"])
    assert cells == [("", "—"), ("changed", "stage 3: 2 epochs at 28 px (presize 36), bs 16, unfrozen, "
                                             "discriminative lr slice(1e-5, 1e-4), MixUp α=0.2")]
    longer = {**three, "stages": [*three["stages"][:2], {**three["stages"][2], "epochs": 5}]}
    both = client.get("/api/v1/compare", params={"ids": f"{b},{add_run(client, longer)}"}).json()
    assert set(both["config_diff"]) == {"stages[2].epochs"}  # a stage both runs have: field by field, as before
    from fitboard.app.pages.compare import recipe_diff_rows

    tracked = recipe_diff_rows({"stages[1]": {1: {"lr": 0.1}, 2: None}}, [1, 2], baseline=2)  # a tracked run's stage
    assert tracked == [("stage 2", "stages[1]", [('{"lr": 0.1}', True), ("—", False)])]  # as stored, never a 500


def test_the_compare_page_asks_for_webgl_only_from_a_strict_plotly_build(tmp_path, sqlite_url, data_root, client):
    a, b = add_run(client, tiny_recipe(name="a")), add_run(client, tiny_recipe(name="b"))
    assert embedded(client.get(f"/compare?ids={a},{b}").text, "compare-data")["webgl"] is False  # installed bundle
    strict = tmp_path / "plotly-strict.min.js"
    strict.write_text("/**\n* plotly.js (strict - minified) v4.1.1\n*/\nwindow.Plotly = {};\n")
    settings = Settings(home=tmp_path / "home", database_url=sqlite_url, data_root=data_root, plotly_js=str(strict))
    with TestClient(create_app(settings)) as c:
        assert embedded(c.get(f"/compare?ids={a},{b}").text, "compare-data")["webgl"] is True
        assert c.get("/vendor/plotly.min.js").text == strict.read_text()  # the configured bundle is the one served
    with pytest.raises(ValueError, match="FITBOARD_PLOTLY_JS: no file at"):
        Settings(home=tmp_path / "home", plotly_js=str(tmp_path / "missing.js"))
    assert Settings(home=tmp_path / "home", plotly_js="").plotly_js is None
