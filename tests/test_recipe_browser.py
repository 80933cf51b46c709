"""The run form's scripts in Debian's chromium: the demo preset, the augmentation switch and a recipe file import."""
from __future__ import annotations

import re

from sqlalchemy import select

from fitboard.app.core.recipes import read_recipe_file
from fitboard.app.core.schemas import parse_spec
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import Run
from tests.store_fixtures import *  # noqa: F401,F403
from tests.test_browser_pages import site  # noqa: F401  (the fixture)


def queued_spec(app, page) -> dict:  # noqa: F811
    """Queue the form as it stands; the stored spec of the new run."""
    page.click("button.primary")
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    run_id = int(page.url.rsplit("/", 1)[1])
    with session_scope(app.state.engine) as session:
        return session.exec(select(Run.spec).where(Run.id == run_id)).one()[0]


def test_demo_preset_augment_switch_and_file_import(site, page, tmp_path):  # noqa: F811
    base, app = site
    demo = read_recipe_file("recipes/demo.yaml")
    page.goto(f"{base}/runs/new")
    page.select_option("#dataset", "digits")
    page.click("button.preset:has-text('Demo recipe')")
    assert page.locator("#augment").is_checked() and not page.locator('[name="augment_flip"]').is_checked()
    page.uncheck("#augment")  # off: the settings stay but are greyed out and not sent
    assert page.locator('[name="augment_max_rotate"]').is_disabled()
    page.check("#augment")
    page.fill('[name="augment_max_rotate"]', "4")
    assert queued_spec(app, page) == parse_spec({**demo, "augment": {"flip": False, "max_rotate": 4}}).model_dump(
        mode="json")

    recipe = tmp_path / "mine.yaml"
    recipe.write_text("name: from-a-file\ndataset: digits\narch: resnet18\npretrained: false\naugment: none\n"
                      "stages: [{epochs: 1, size: 24, presize: 32, lr: 0.003}]\n")
    page.goto(f"{base}/runs/new")
    page.click("#import summary")
    page.set_input_files('[name="recipe_file"]', str(recipe))
    page.click("#import-form button")
    page.wait_for_load_state()
    assert page.locator('[name="name"]').input_value() == "from-a-file"
    assert not page.locator("#augment").is_checked() and page.locator('[name="augment_min_scale"]').is_disabled()
    assert queued_spec(app, page) == parse_spec(read_recipe_file(recipe)).model_dump(mode="json")
