"""Recipes in the browser: import into the run form, download as YAML, the demo preset, form defaults, clone errors."""
from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from fitboard.app.core.recipes import MAX_RECIPE_BYTES, read_recipe_file
from fitboard.app.core.schemas import RunSpec, parse_spec
from fitboard.app.core.settings import Settings
from fitboard.app.pages.forms import RUN_FIELDS, form_from_spec, recipe_from_form
from fitboard.app.pages.presets import presets
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import Run
from fitboard.app.web.app import create_app
from tests.store_fixtures import *  # noqa: F401,F403
from tests.test_pages import add_run, csrf, errors_of, make_client, value_of  # noqa: F401  make_client: a fixture


@pytest.fixture
def client(make_client) -> TestClient:  # noqa: F811
    return make_client()


class FormFields(HTMLParser):
    """What a browser without scripts submits for the form with id form_id: names and values, in page order."""

    def __init__(self, form_id: str):
        super().__init__()
        self.form_id, self.inside, self.fields = form_id, False, []
        self.select, self.option, self.first_option, self.textarea = None, None, None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        if not self.inside:
            return
        if tag == "input" and a.get("name") and (a.get("type") != "checkbox" or "checked" in a):
            self.fields.append((a["name"], a.get("value", "on" if a.get("type") == "checkbox" else "")))
        elif tag == "select":
            self.select, self.option, self.first_option = a.get("name"), None, None
        elif tag == "option" and self.select:
            value = a.get("value")
            self.pending = (value, "selected" in a)
        elif tag == "textarea":
            self.textarea = a.get("name")

    def handle_data(self, data):
        if self.select and getattr(self, "pending", None):
            value, selected = self.pending
            value = data.strip() if value is None else value
            self.first_option = self.first_option if self.first_option is not None else value
            if selected:
                self.option = value
            self.pending = None

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        if tag == "select" and self.select:
            self.fields.append((self.select, self.option if self.option is not None else self.first_option))
            self.select = None


def submitted(page: str, form_id: str = "run-form") -> dict[str, str]:
    """The fields the page's form posts as it stands (the stage template row is not part of the form)."""
    page = re.sub(r"<template.*?</template>", "", page, flags=re.S)
    parser = FormFields(form_id)
    parser.feed(page)
    return {k: v for k, v in parser.fields if v is not None}  # HTMLParser has unescaped them already


def spec_of(client: TestClient, run_id: int) -> dict:
    with session_scope(client.app.state.engine) as session:
        return session.exec(select(Run.spec).where(Run.id == run_id)).one()[0]


def import_file(client: TestClient, text: str, token: str, name: str = "recipe.yaml"):
    return client.post("/runs/new/import", data={"csrf_token": token},
                       files={"recipe_file": (name, text.encode(), "application/yaml")})


def submit(client: TestClient, page: str) -> int:
    """Post the run form as the page shows it; the new run's id."""
    r = client.post("/runs/new", data=submitted(page), follow_redirects=False)
    assert r.status_code == 303, errors_of(r.text)
    return int(r.headers["location"].rsplit("/", 1)[1])


def test_download_import_submit_gives_the_identical_spec(client):
    token = csrf(client)
    for overrides in ({"augment": {"flip": False, "max_rotate": 5.5, "p_lighting": 0.3, "min_scale": 0.9},
                       "label_smoothing": 0.1, "precision": "bf16", "max_attempts": 5, "seed": 1234567},
                      {"augment": None, "tta": None, "keep_best": None, "normalize": "none"}):
        original = add_run(client, "succeeded", name="round-trip", **overrides)
        r = client.get(f"/runs/{original}/recipe.yaml")
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/yaml")
        assert 'filename="round-trip.yaml"' in r.headers["content-disposition"]
        assert yaml.safe_load(r.text) == spec_of(client, original)  # the file is the stored spec, nothing else

        page = import_file(client, r.text, token)
        assert page.status_code == 200 and "The run was not queued" not in page.text
        assert value_of(page.text, "name") == "round-trip"
        copy = submit(client, page.text)
        assert copy != original and spec_of(client, copy) == spec_of(client, original)
    assert f'href="/runs/{original}/recipe.yaml"' in client.get(f"/runs/{original}").text
    assert "no augmentation (batches only resized" in client.get(f"/runs/{original}").text
    first = client.get(f"/runs/{original - 2}").text  # the run with its own augment block, in words on its page
    assert ("augmentation: flip off, flip_vert off, max_rotate 5.5, max_zoom 1.1, max_lighting 0.2, max_warp 0.2, "
            "p_affine 0.75, p_lighting 0.3, min_scale 0.9") in html.unescape(first)
    plain = add_run(client, "succeeded", name="round-trip", **{k: v for k, v in overrides.items() if k != "augment"})
    diff = client.get(f"/api/v1/compare?ids={original},{plain}").json()["config_diff"]
    assert diff["augment.flip"][str(plain)] is True and diff["augment.flip"].get(str(original)) is None  # none: off
    first = client.get(f"/api/v1/compare?ids={original - 2},{plain}").json()["config_diff"]
    assert {k: v for k, v in first.items() if k.startswith("augment")} == {
        "augment.flip": {str(original - 2): False, str(plain): True},
        "augment.max_rotate": {str(original - 2): 5.5, str(plain): 10.0},
        "augment.p_lighting": {str(original - 2): 0.3, str(plain): 0.75},
        "augment.min_scale": {str(original - 2): 0.9, str(plain): 0.75}}
    assert "augment.max_rotate" in html.unescape(client.get(f"/compare?ids={original - 2},{plain}").text)
    assert client.get("/runs/987654/recipe.yaml").status_code == 404


def test_a_pasted_json_recipe_fills_the_form(client):
    recipe = {"name": "pasted", "dataset": "digits", "arch": "resnet18", "pretrained": False,
              "augment": {"flip": False, "max_rotate": 3},
              "stages": [{"epochs": 1, "size": 24, "presize": 32, "lr": 0.002}]}
    page = client.post("/runs/new/import", data={"csrf_token": csrf(client), "recipe": json.dumps(recipe)}).text
    fields = submitted(page)
    assert fields["name"] == "pasted" and fields["augment_max_rotate"] == "3" and "augment_flip" not in fields
    assert fields["stages-0-lr"] == "0.002" and fields["arch"] == "resnet18" and "pretrained" not in fields
    run_id = submit(client, page)
    assert spec_of(client, run_id) == parse_spec(recipe).model_dump(mode="json")


def test_bad_recipes_are_refused_with_a_clear_error(client):
    token = csrf(client)
    r = import_file(client, "name: broken\nstages: [{epochs: 1\n", token)
    assert r.status_code == 422
    assert re.search(r'id="import-errors".*cannot parse recipe: line 3, column 1', r.text, re.S)
    assert "name: broken" in html.unescape(r.text)  # the text is kept to fix

    r = import_file(client, "a: &x [1, 2]\nb: *x\n", token)
    assert r.status_code == 422 and "aliases (*name) are not allowed" in html.unescape(r.text)
    r = import_file(client, "x: " + "y" * MAX_RECIPE_BYTES, token)
    assert r.status_code == 422 and f"at most {MAX_RECIPE_BYTES // 1024} KB" in r.text
    r = import_file(client, "- just\n- a list\n", token)
    assert r.status_code == 422 and "a recipe must hold a mapping of fields" in r.text
    r = client.post("/runs/new/import", data={"csrf_token": token},
                    files={"recipe_file": ("r.yaml", b"\xff\xfe\x00", "application/yaml")})
    assert r.status_code == 422 and "r.yaml is not UTF-8 text" in r.text
    r = client.post("/runs/new/import", data={"csrf_token": token, "recipe": "  "})
    assert r.status_code == 422 and "choose a file or paste a recipe" in r.text
    assert client.post("/runs/new/import", data={"recipe": "name: x"}).status_code == 403

    # A parsed recipe with bad values is loaded, each problem beside its field, unknown keys by the import box.
    demo = read_recipe_file("recipes/demo.yaml")
    r = import_file(client, yaml.safe_dump({**demo, "augment": {"max_rotate": 500}, "colour": "red"}), token)
    assert r.status_code == 422 and "The recipe was loaded with problems." in r.text
    assert "less than or equal to 180" in errors_of(r.text)["augment_max_rotate"]
    assert value_of(r.text, "augment_max_rotate") == "500" and value_of(r.text, "name") == "digits-demo"
    assert "colour: Extra inputs are not permitted" in r.text
    with session_scope(client.app.state.engine) as session:
        assert session.exec(select(Run.id)).first() is None  # importing never queues


def test_demo_preset_equals_recipes_demo_yaml():
    demo = [p for p in presets("digits", 32) if p["key"] == "demo"]
    assert len(demo) == 1
    from_file = parse_spec(read_recipe_file("recipes/demo.yaml")).model_dump(mode="json")
    assert parse_spec(recipe_from_form(demo[0]["form"])).model_dump(mode="json") == from_file
    assert demo[0]["form"] == form_from_spec(read_recipe_file("recipes/demo.yaml"))
    # every digits preset leaves flips off; a photo dataset keeps fastai's default flips
    assert all(parse_spec(recipe_from_form(p["form"])).augment.flip is False for p in presets("digits", 32))
    assert all(parse_spec(recipe_from_form(p["form"])).augment.flip is True for p in presets("cassava", 600))


def test_the_blank_form_shows_runspecs_defaults(tmp_path, sqlite_url):
    empty = tmp_path / "no-datasets"
    empty.mkdir()
    with TestClient(create_app(Settings(home=tmp_path / "home", database_url=sqlite_url, data_root=empty))) as c:
        page = c.get("/runs/new").text
    fields = submitted(page)
    defaults = RunSpec.model_fields
    assert fields["arch"] == defaults["arch"].default == "resnet34"
    assert ("pretrained" in fields) is defaults["pretrained"].default is True
    assert fields["normalize"] == defaults["normalize"].default and fields["seed"] == str(defaults["seed"].default)
    assert fields["max_attempts"] == str(defaults["max_attempts"].default) and "tta" not in fields
    # submitted with a name, a dataset and the stage filled in, the blank form is exactly RunSpec's defaults
    fields.update({"name": "blank", "dataset": "digits"})
    recipe = parse_spec(recipe_from_form(form_from_post_like(fields)))
    assert recipe == RunSpec(name="blank", dataset="digits", stages=[{"epochs": 1, "size": 32}])


def form_from_post_like(fields: dict) -> dict:
    from fitboard.app.pages.forms import form_from_post
    return form_from_post(fields)


def test_every_recipe_field_has_a_place_on_the_form():
    # a RunSpec field the form lacks would be dropped by clone, import and the round trip
    covered = {f.split("_")[0] if f.startswith(("tta_", "augment_")) else f for f in RUN_FIELDS}
    assert set(RunSpec.model_fields) <= covered


def test_clone_form_keeps_its_heading_after_a_validation_error(client):
    original = add_run(client, "succeeded", name="the-original")
    page = client.get(f"/runs/{original}/clone").text
    fields = submitted(page)
    assert fields["clone_of"] == str(original)
    r = client.post("/runs/new", data={**fields, "stages-0-epochs": "0"})
    assert r.status_code == 422 and "stages-0-epochs" in errors_of(r.text)
    assert re.search(rf'<h1>Clone of <a href="/runs/{original}">the-original</a></h1>', r.text)
    assert "<title>Clone run" in r.text and submitted(r.text)["clone_of"] == str(original)
    # a tampered clone_of is ignored, not an error
    r = client.post("/runs/new", data={**fields, "stages-0-epochs": "0", "clone_of": "99999999999999999999"})
    assert r.status_code == 422 and "<h1>New run</h1>" in r.text
