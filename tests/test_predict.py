"""Predict with a succeeded run's model through the API: a real tiny training, its exported model in the artifact
store, and a real `fitboard predictor` process answering from the database."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from fitboard.app.core.schemas import parse_spec
from fitboard.app.core.settings import Settings
from fitboard.app.store.db import make_engine, session_scope
from fitboard.app.store.predictions import live_predictors
from fitboard.app.store.runs import create_run
from fitboard.app.web.app import create_app
from tests.helpers import tiny_recipe, train_and_store
from tests.live import live_app

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_root):
    """A home with a migrated database holding one succeeded run whose model is in the default artifact store."""
    home = tmp_path_factory.mktemp("predict-home")
    spec = parse_spec(tiny_recipe(name="predict-me"))
    url, run_id = train_and_store(home, spec, data_root)
    engine = make_engine(url)
    with session_scope(engine) as session:
        queued = create_run(session, spec.model_dump(mode="json"), techniques=spec.techniques()).id
    engine.dispose()
    return {"home": home, "url": url, "run": run_id, "queued": queued}


@pytest.fixture(scope="module")
def predictor(trained):
    """A `fitboard predictor` process on that database; stopped afterwards."""
    env = {**os.environ, "FITBOARD_HOME": str(trained["home"]), "FITBOARD_DATABASE_URL": trained["url"],
           "OMP_NUM_THREADS": "1"}
    log = open(trained["home"] / "predictor.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "fitboard.worker.cli", "predictor"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    engine = make_engine(trained["url"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with session_scope(engine) as session:
            if live_predictors(session):
                break
        assert proc.poll() is None, (trained["home"] / "predictor.log").read_text()
        time.sleep(0.2)
    engine.dispose()
    yield proc
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def client(trained, data_root):
    app = create_app(Settings(home=trained["home"], database_url=trained["url"], data_root=data_root))
    with TestClient(app) as c:
        yield c


def digit_jpeg(data_root: Path, size: int = 224) -> bytes:
    """A validation digit from the demo data, scaled up to size x size as a JPEG."""
    path = sorted((data_root / "digits" / "train_images").glob("*.jpg"))[0]
    buf = io.BytesIO()
    Image.open(path).convert("RGB").resize((size, size)).save(buf, "JPEG")
    return buf.getvalue()


def test_a_good_image_gets_the_top_5_classes_and_the_second_reuses_the_loaded_model(client, trained, predictor,
                                                                                    data_root):
    image = digit_jpeg(data_root)
    first = client.post(f"/api/v1/runs/{trained['run']}/predict", files=[("images", ("a.jpg", image, "image/jpeg"))])
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["status"] == "done" and body["loaded_model"] is True and body["names"] == ["a.jpg"]
    (answer,) = body["results"]
    probs = [t["probability"] for t in answer["top"]]
    assert len(answer["top"]) == 5 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
    assert {t["label"] for t in answer["top"]} <= set(DIGITS)
    two = client.post(f"/api/v1/runs/{trained['run']}/predict",
                      files=[("images", ("a.jpg", image, "image/jpeg")), ("images", ("b.png", image, "image/jpeg"))])
    assert two.status_code == 200 and two.json()["loaded_model"] is False  # warm: the learner stayed loaded
    assert [r["name"] for r in two.json()["results"]] == ["a.jpg", "b.png"]
    again_top = two.json()["results"][0]["top"]  # the same image, the same answer (to float rounding in a batch)
    assert [t["label"] for t in again_top] == [t["label"] for t in answer["top"]]
    assert [t["probability"] for t in again_top] == pytest.approx(probs, abs=1e-6)
    again = client.get(f"/api/v1/predictions/{two.json()['id']}")
    assert again.status_code == 200 and again.json()["results"] == two.json()["results"]


def test_without_waiting_the_answer_is_202_with_where_to_poll(client, trained, predictor, data_root):
    r = client.post(f"/api/v1/runs/{trained['run']}/predict", params={"wait": 0},
                    files=[("images", ("a.jpg", digit_jpeg(data_root), "image/jpeg"))])
    assert r.status_code == 202 and r.headers["location"] == f"/api/v1/predictions/{r.json()['id']}"
    deadline = time.monotonic() + 60
    while client.get(r.headers["location"]).json()["status"] != "done":
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_bad_uploads_are_refused_naming_the_file(client, trained, predictor, data_root):
    url = f"/api/v1/runs/{trained['run']}/predict"
    not_image = client.post(url, files=[("images", ("notes.jpg", b"this is text, not a JPEG", "image/jpeg"))])
    assert not_image.status_code == 422
    assert not_image.json()["detail"][0]["loc"] == "images[0] (notes.jpg)"
    truncated = digit_jpeg(data_root)[:300]
    r = client.post(url, files=[("images", ("ok.jpg", digit_jpeg(data_root), "image/jpeg")),
                                ("images", ("cut.jpg", truncated, "image/jpeg"))])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == "images[1] (cut.jpg)"
    too_many = client.post(url, files=[("images", (f"{i}.jpg", b"x", "image/jpeg")) for i in range(17)])
    assert too_many.status_code == 422 and "at most 16 images" in too_many.json()["detail"][0]["msg"]
    big = b"\xff" * (5 * 2**20 + 2**18)  # two of these: 10.5 MB of images in an 11 MB body
    r = client.post(url, files=[("images", ("a.jpg", big, "image/jpeg")), ("images", ("b.jpg", big, "image/jpeg"))])
    assert r.status_code == 413 and "at most 10 MB" in r.json()["detail"]
    huge = client.post(url, files=[("images", ("a.jpg", b"\xff" * 12 * 2**20, "image/jpeg"))])
    assert huge.status_code == 413  # over the body limit: refused before it is read
    assert client.post(url).status_code == 422  # no images at all


def test_only_a_succeeded_run_predicts(client, trained, predictor, data_root):
    image = [("images", ("a.jpg", digit_jpeg(data_root), "image/jpeg"))]
    r = client.post(f"/api/v1/runs/{trained['queued']}/predict", files=image)
    assert r.status_code == 409 and "only a succeeded run" in r.json()["detail"]
    assert client.post("/api/v1/runs/999999/predict", files=image).status_code == 404
    assert client.get("/api/v1/predictions/999999").status_code == 404


def test_the_predict_command_prints_the_top_classes_and_names_a_bad_file(trained, predictor, data_root, tmp_path):
    image, text = tmp_path / "digit.jpg", tmp_path / "notes.png"
    image.write_bytes(digit_jpeg(data_root))
    text.write_text("not an image")
    settings = Settings(home=trained["home"], database_url=trained["url"], data_root=data_root)
    with live_app(settings) as (base, _):
        env = {**os.environ, "FITBOARD_URL": base}
        good = subprocess.run([sys.executable, "-m", "fitboard.worker.cli", "predict", str(trained["run"]), str(image)],
                              capture_output=True, text=True, env=env, timeout=120)
        assert good.returncode == 0, good.stderr
        lines = good.stdout.splitlines()
        assert lines[0] == "digit.jpg" and len(lines) == 6 and all(line.strip()[0].isdigit() for line in lines[1:])
        assert lines[1].split()[1] in DIGITS and lines[1].split()[0].endswith("%")
        bad = subprocess.run([sys.executable, "-m", "fitboard.worker.cli", "predict", str(trained["run"]), str(image),
                              str(text)], capture_output=True, text=True, env=env, timeout=120)
        assert bad.returncode == 2 and "images[1] (notes.png)" in bad.stderr


@pytest.mark.parametrize("width", [1280, 390])
def test_the_predict_card_shows_each_class_name_whole(browser,  # noqa: F811
                                                       trained, predictor, data_root, tmp_path, width):
    """In chromium, on a desktop and on a phone: every class name on a prediction card is one of the model's classes,
    shown whole (not cut to "t…": nothing overflows its box), with its percentage."""
    upload = tmp_path / "digit.jpg"
    upload.write_bytes(digit_jpeg(data_root))
    settings = Settings(home=trained["home"], database_url=trained["url"], data_root=data_root)
    with live_app(settings) as (base, _):
        page = browser.new_page(viewport={"width": width, "height": 900})
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{base}/runs/{trained['run']}")
        page.set_input_files("#predict-files", [str(upload)])
        page.click("#predict-button")
        page.wait_for_selector("#predict-results ol.top-classes li", timeout=120_000)
        labels = page.eval_on_selector_all("#predict-results .top-classes .label", """els => els.map(e => ({
            text: e.textContent, shown: e.innerText, width: e.getBoundingClientRect().width,
            scroll: e.scrollWidth, client: e.clientWidth}))""")
        nums = page.locator("#predict-results .top-classes .num").all_inner_texts()
        page.close()
    assert len(labels) == 5 and {label["text"] for label in labels} <= set(DIGITS)
    for label in labels:
        assert label["shown"] == label["text"] and label["width"] > 0, label
        assert label["scroll"] <= label["client"], label  # the whole name fits its box: not cut with an ellipsis
    assert len(nums) == 5 and all(n.endswith("%") and 0 <= float(n[:-1]) <= 100 for n in nums)
    assert not errors, errors


def test_without_a_predictor_the_answer_is_503_saying_how_to_start_one(client, trained, predictor, data_root):
    predictor.terminate()  # a clean stop gives its lease back
    predictor.wait(timeout=30)
    r = client.post(f"/api/v1/runs/{trained['run']}/predict",
                    files=[("images", ("a.jpg", digit_jpeg(data_root), "image/jpeg"))])
    assert r.status_code == 503 and "fitboard predictor" in r.json()["detail"]


def fresh_predictor_learner(trained, data_root, name: str):
    """The run's learner loaded the way the predictor process loads it: a new Predictor, the model fetched from the
    artifact store the worker exported it to, unpickled anew."""
    from fitboard.worker.predictor import Predictor

    settings = Settings(home=trained["home"], database_url=trained["url"], data_root=data_root)
    engine = make_engine(trained["url"])
    try:
        return Predictor(engine, settings, name=name).learner(trained["run"], prediction_id=0)
    finally:
        engine.dispose()


def test_the_exported_model_loaded_fresh_answers_the_same_every_time_and_as_get_preds(trained, data_root):
    """Twice: load the exported file as the predictor does, predict the same images 5 times (identical each time:
    only the validation transforms run, no training augmentation), equal to get_preds on a test DataLoader of that
    freshly loaded learner; and the two fresh loads agree."""
    import pandas as pd
    import torch

    from fitboard.worker.predictor import predict_batch

    paths = sorted((data_root / "digits" / "train_images").glob("*.jpg"))[:3]
    images = [p.read_bytes() for p in paths]
    answers = []
    for load in range(2):
        learn = fresh_predictor_learner(trained, data_root, name=f"check-{load}")
        repeated = [predict_batch(learn, images) for _ in range(5)]
        assert repeated[0].shape == (3, len(DIGITS))
        assert all(torch.equal(again, repeated[0]) for again in repeated[1:]), [r[0, :3] for r in repeated]
        test_dl = learn.dls.test_dl(pd.DataFrame({"path": [str(p) for p in paths], "label": [None] * 3}),
                                    num_workers=0)
        reference, _ = learn.get_preds(dl=test_dl)
        assert torch.allclose(repeated[0], reference, atol=1e-5), (repeated[0] - reference).abs().max()
        answers.append(repeated[0])
    assert torch.allclose(answers[0], answers[1], atol=1e-6)


# A signal every 2 ms while the main thread waits in 0.1 ms slices, for 2 s: the handler's set() lands inside wait()
# hundreds of times. With threading.Event in SignalStop's place this hangs within a second (the handler blocks on the
# lock the interrupted wait() holds), as `fitboard predictor` once hung on SIGTERM in the suite.
STORM = """
import signal, sys, time
from fitboard.app.core.signal_stop import SignalStop
stop, woken = SignalStop(), 0
signal.signal(signal.SIGALRM, stop.set)
signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
end = time.monotonic() + 2
while time.monotonic() < end:
    woken += stop.wait(0.0001)
    stop.requested = False
signal.setitimer(signal.ITIMER_REAL, 0)
stop.set()
print(woken, stop.wait(30))
"""


def test_the_predictors_stop_request_is_safe_to_make_from_a_signal_handler():
    done = subprocess.run([sys.executable, "-c", STORM], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    woken, stopped = done.stdout.split()
    assert int(woken) > 50 and stopped == "True"  # signals landed in waits, and a set flag ends a wait at once
