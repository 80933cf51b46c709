"""Recipes read in words in Debian's chromium, as the sweep verdicts are: compare's recipe differences and the names
of a sweep's runs say "label smoothing 0.1", never "label_smoothing null | 0.1"."""
from __future__ import annotations

from fitboard.app.core.variant_words import describe_change, field_title, fmt_lr, fmt_number, variant_words
from tests.site_objects import everything, get_json  # noqa: F401  (the module's live server)
from tests.store_fixtures import *  # noqa: F401,F403


def test_compare_says_the_recipe_differences_in_words(everything, page):  # noqa: F811
    base, variant = everything.ids.runs[0], everything.ids.runs[3]  # seed 0 of the base and of label smoothing 0.1
    api = get_json(everything.base, f"/api/v1/compare?ids={base},{variant}&baseline={base}")
    assert set(api["config_diff"]) == {"name", "label_smoothing"}
    page.goto(f"{everything.base}/compare?ids={base},{variant}&baseline={base}")
    table = page.locator("table.config-diff")
    fields = table.locator("tbody th").all_inner_texts()
    assert fields == ["label smoothing", "name"]  # sorted by field path, as the API gives them
    assert table.locator("tbody th").nth(0).get_attribute("title") == "label_smoothing"  # the path on hover
    cells = table.locator("tbody tr").nth(0).locator("td").all_inner_texts()
    assert cells == ["no label smoothing", "label smoothing 0.1"]
    names = table.locator("tbody tr").nth(1).locator("td").all_inner_texts()
    assert names == ["swept | base | seed 0", "swept | label smoothing 0.1 | seed 0"]


def test_a_sweeps_runs_are_named_in_words(everything, page):  # noqa: F811
    report = get_json(everything.base, f"/api/v1/sweeps/{everything.ids.sweep}")
    names = {r["id"]: get_json(everything.base, f"/api/v1/runs/{r['id']}")["name"]
             for v in report["variants"] for r in v["runs"]}
    assert sorted(names.values()) == sorted(f"swept | {w} | seed {s}" for w in ("base", "label smoothing 0.1")
                                            for s in (0, 1, 2))
    page.goto(f"{everything.base}/runs")
    shown = page.locator("table.runs a.run-name").all_inner_texts()
    assert "swept | label smoothing 0.1 | seed 2" in shown and not [n for n in shown if "label_smoothing" in n]
    verdicts = page.locator("body").inner_text()
    assert "label_smoothing=" not in verdicts


def test_numbers_read_to_three_significant_digits():
    base = {"stages": [{"lr": 1e-3}, {"lr": 1e-3}]}
    assert describe_change("stages[*].lr", 0.0022881136684755237, base) == "lr 2.29e-3 in every stage"
    assert describe_change("stages[*].lr", 0.0022881136684755237, {"stages": [{}]}) == "lr 2.29e-3"
    assert describe_change("label_smoothing", 0.07345678, {}) == "label smoothing 0.0735"
    assert describe_change("augment.max_rotate", 12.5, {}) == "augment max rotate 12.5"
    assert describe_change("stages[0].bs", 64, {}) == "batch size 64"
    assert [fmt_lr(v) for v in (1e-3, 2.5e-4, 0.01, 0.0123456, 3.0)] == ["1e-3", "2.5e-4", "0.01", "0.0123", "3"]
    assert [fmt_number(v) for v in (0.2, 1e-05, 12.0, 7, 1234.5678)] == ["0.2", "1e-05", "12", "7", "1.23e+03"]
    assert field_title("stages[*].lr", base) == "learning rate in every stage"
    assert field_title("stages[1].mixup", base) == "MixUp α in stage 2"
    assert variant_words({"stages[*].mixup": 0.2}, base) == "MixUp 0.2 in every stage"
