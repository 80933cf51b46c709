"""Pictures of a run's errors: a confusion cell's images and the compare page's disagreements as thumbnails, paged,
through the confined dataset image route (runs finished by hand on a real database; the images are real digits)."""
from __future__ import annotations

import csv
import re

import pytest
from fastapi.testclient import TestClient

from fitboard.app.core.schemas import parse_spec
from fitboard.app.core.settings import Settings
from fitboard.app.store.db import session_scope
from fitboard.app.store.runs import create_run
from fitboard.app.web.app import create_app
from tests.helpers import finish_by_hand, tiny_recipe
from tests.store_fixtures import *  # noqa: F401,F403


@pytest.fixture
def client(tmp_path, sqlite_url, data_root):
    with TestClient(create_app(Settings(home=tmp_path / "home", database_url=sqlite_url, data_root=data_root))) as c:
        yield c


@pytest.fixture
def image_ids(data_root) -> list[str]:
    """The digits sample's image ids, in CSV order."""
    return [r["image_id"] for r in csv.DictReader((data_root / "digits" / "train.csv").open())]


def finished(client, tmp_path, predictions) -> int:
    spec = parse_spec(tiny_recipe())
    with session_scope(client.app.state.engine) as s:
        run_id = create_run(s, spec.model_dump(mode="json"), techniques=spec.techniques()).id
    finish_by_hand(client.app.state.engine, run_id, 0.8, predictions=predictions, home=tmp_path / "home",
                   labels=("a", "b"))
    return run_id


def thumbs(page: str) -> list[tuple[str, str]]:
    """(image id, thumbnail URL) of each thumbnail on a page."""
    return re.findall(r'data-image-id="([^"]+)">\s*<a href="([^"]+)"', page)


def test_a_confusion_cell_links_to_its_images_paged_by_100(client, tmp_path, image_ids):
    wrong = image_ids[:150]  # 150 actual a, predicted b: two pages
    preds = [(i, "a", "b") for i in wrong] + [(i, "a", "a") for i in image_ids[150:160]]
    run_id = finished(client, tmp_path, preds)
    page = client.get(f"/runs/{run_id}").text
    assert f'href="/runs/{run_id}?actual=a&amp;predicted=b#cell-images"' in page  # the cell is a link
    page = client.get(f"/runs/{run_id}", params={"actual": "a", "predicted": "b"}).text
    shown = thumbs(page)
    assert "Actual a, predicted b: 150 images" in page and [i for i, _ in shown] == wrong[:100]
    assert all(src.startswith("/datasets/digits/images/") for _, src in shown) and 'loading="lazy"' in page
    assert client.get(shown[0][1]).headers["content-type"] == "image/jpeg"
    nxt = re.search(r'<a rel="next" href="([^"]+)"', page)[1].replace("&amp;", "&")
    assert [i for i, _ in thumbs(client.get(nxt).text)] == wrong[100:]
    assert "No validation images in this cell" in client.get(f"/runs/{run_id}?actual=b&predicted=a").text
    assert client.get(f"/runs/{run_id}?actual={'x' * 201}&predicted=a").status_code == 422  # bounded, never a 500


def test_compare_disagreements_are_two_thumbnail_grids(client, tmp_path, image_ids):
    ids = image_ids[:80]
    a = finished(client, tmp_path, [(i, "a", "a" if k < 70 else "b") for k, i in enumerate(ids)])
    b = finished(client, tmp_path, [(i, "a", "b" if k < 65 else "a") for k, i in enumerate(ids)])
    page = client.get(f"/compare?ids={a},{b}").text
    a_side = page[page.index('id="disagree-a"'):page.index('id="disagree-b"')]
    b_side = page[page.index('id="disagree-b"'):]
    assert "<strong>65</strong> images" in a_side and len(thumbs(a_side)) == 60 and f"#{b} said b" in a_side
    assert "<strong>10</strong> images" in b_side and len(thumbs(b_side)) == 10
    nxt = re.search(r'<a rel="next" href="([^"]+)"', page)[1].replace("&amp;", "&")
    later = client.get(nxt).text
    assert len(thumbs(later[later.index('id="disagree-a"'):later.index('id="disagree-b"')])) == 5


def test_compare_baseline_is_the_oldest_unfinished_runs_are_marked_and_one_run_is_refused(client, tmp_path,
                                                                                         image_ids):
    old = finished(client, tmp_path, [(i, "a", "a") for i in image_ids[:10]])
    new = finished(client, tmp_path, [(i, "a", "a") for i in image_ids[:10]])
    spec = parse_spec(tiny_recipe())
    with session_scope(client.app.state.engine) as s:
        cut = create_run(s, spec.model_dump(mode="json"), techniques=spec.techniques()).id
    client.post(f"/api/v1/runs/{cut}/cancel")
    data = client.get(f"/api/v1/compare?ids={new},{old},{cut}").json()  # the runs list sends newest first
    assert data["baseline"] == old
    page = client.get(f"/compare?ids={cut},{new},{old}").text
    row = re.search(rf'<tr class=" unfinished"[^>]*>.*?#{cut}.*?</tr>', page, re.S)[0]
    assert "not comparable" in row and "better" not in row and "worse" not in row
    r = client.get(f"/api/v1/compare?ids={old}")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == "ids"
    assert "Pick two or more runs" in client.get(f"/compare?ids={old}").text
