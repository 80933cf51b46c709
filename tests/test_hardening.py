"""Each finding of the hardening issue as a test: inputs that gave 500s, cross-site writes, DNS rebinding, chunked
bodies, login throttling, sessions that outlived the token or a logout, headers, SSE limits, CSV formulas, SVG."""
from __future__ import annotations

import re
import shutil
import stat
import subprocess
import sys
import threading
import time

import pytest
import requests
from fastapi.testclient import TestClient

from fitboard.app.core.settings import Settings
from fitboard.app.store.run_list import MAX_OFFSET
from fitboard.app.web.app import create_app
from tests.helpers import BEARER, TOKEN, finish_by_hand, tiny_recipe
from tests.live import live_app
from tests.store_fixtures import *  # noqa: F401,F403  sqlite_template, sqlite_url, sqlite_engine

BIG = "99999999999999999999999"  # above 2**63 - 1: SQLite raised OverflowError (500)


@pytest.fixture
def settings(tmp_path, sqlite_url, data_root) -> Settings:
    return Settings(home=tmp_path / "home", database_url=sqlite_url, data_root=data_root)


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as c:
        yield c


def queued_run(client, name: str = "queued") -> int:
    r = client.post("/api/v1/runs", json=tiny_recipe(name=name))
    assert r.status_code == 201, r.text
    return r.json()["id"]


def problems(response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {p["loc"]: p["msg"] for p in response.json()["detail"]}


# ---- inputs that gave 500s -----------------------------------------------------------------------------------------

def test_ids_and_offsets_past_a_database_integer_are_422(client):
    for path in (f"/api/v1/runs/{BIG}", f"/api/v1/runs/{BIG}/epochs", f"/api/v1/sweeps/{BIG}",
                 f"/api/v1/runs?offset={BIG}", f"/api/v1/compare?ids=1&baseline={BIG}"):
        assert client.get(path).status_code == 422, path
    assert "ids" in problems(client.get(f"/api/v1/compare?ids=1,{BIG}"))
    assert client.post(f"/api/v1/runs/{BIG}/cancel").status_code == 422
    assert client.get(f"/api/v1/runs/{2**63 - 1}").status_code == 404  # the largest id is only unknown
    # Offsets stop at MAX_OFFSET (deeper pages go by cursor): one past it is 422, the deepest allowed is empty here.
    assert "query.offset" in problems(client.get(f"/api/v1/runs?offset={MAX_OFFSET + 1}"))
    assert client.get(f"/api/v1/runs?offset={MAX_OFFSET}").json()["items"] == []
    assert client.get(f"/runs/{BIG}").status_code == 422 and client.get(f"/runs?offset={BIG}").status_code == 200


@pytest.mark.parametrize("path, word", [("digits\x00/x", "NUL"), ("~nosuchuser/digits", "~"),
                                        ("a" * 300, "255 bytes"), ("digits/" + "b" * 300, "255 bytes")])
def test_bad_dataset_paths_are_422_naming_the_field(client, path, word):
    spec = {"layout": "csv", "path": path}
    found = problems(client.post("/api/v1/datasets", json={"name": "bad", "spec": spec}))
    assert word in found["spec.path"]
    found = problems(client.post("/api/v1/runs", json=tiny_recipe(dataset=path)))
    assert word in found["dataset"]
    found = problems(client.post("/api/v1/runs", json=tiny_recipe(dataset={"layout": "csv", "path": "digits",
                                                                           "images": path})))
    assert word in found["dataset.images"]


def test_a_300_character_dataset_name_is_422_and_its_page_404(client):
    assert "name" in problems(client.post("/api/v1/datasets", json={"name": "n" * 300,
                                                                    "spec": {"layout": "csv", "path": "digits"}}))
    assert client.get("/api/v1/datasets/" + "n" * 300).status_code == 422
    assert client.get("/datasets/" + "n" * 300).status_code == 404


def test_a_bad_last_event_id_is_ignored(client, sqlite_engine):
    run_id = queued_run(client)
    finish_by_hand(sqlite_engine, run_id, acc=0.9, epochs=2)
    for last in (BIG, "-1", "abc", "1e9"):
        r = client.get(f"/api/v1/runs/{run_id}/events", headers={"Last-Event-ID": last})
        assert r.status_code == 200 and r.text.count("event: epoch") == 2, last  # from the start, to the end
    r = client.get(f"/api/v1/runs/{run_id}/events", headers={"Last-Event-ID": "1"})
    assert r.text.count("event: epoch") == 1 and "id: 2" in r.text and "event: status" in r.text


# ---- cross-site writes and DNS rebinding ---------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [{"Origin": "https://evil.example"}, {"Origin": "null"},
                                     {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}])
def test_a_cross_site_cancel_is_refused_with_or_without_credentials(client, headers):
    run_id = queued_run(client)
    assert client.post(f"/api/v1/runs/{run_id}/cancel", headers=headers).status_code == 403
    assert client.post(f"/api/v1/runs/{run_id}/cancel", headers={**headers, **BEARER}).status_code == 403
    assert client.post(f"/runs/{run_id}/cancel", headers=headers, data={}).status_code == 403
    assert client.get(f"/api/v1/runs/{run_id}").json()["status"] == "queued"
    same = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
    assert client.post(f"/api/v1/runs/{run_id}/cancel", headers=same).json()["status"] == "cancelled"


def test_scripts_without_browser_headers_still_write(client):
    run_id = queued_run(client)  # TestClient sends neither Origin nor Sec-Fetch-Site, like curl or fitboard submit
    assert client.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200


def test_unknown_host_names_are_refused(client, settings, sqlite_url):
    r = client.get("/api/v1/runs", headers={"Host": "evil.example"})
    assert r.status_code == 400 and "FITBOARD_ALLOWED_HOSTS" in r.json()["detail"]
    assert client.get("/", headers={"Host": "evil.example:8000"}).status_code == 400
    assert client.get("/api/v1/runs", headers={"Host": "localhost:8000"}).status_code == 200
    # the container healthcheck calls /healthz by address, whatever names the operator allowed
    assert client.get("/healthz", headers={"Host": "172.17.0.2:8000"}).status_code == 200
    # the defaults: loopback names and the address `fitboard web --host` bound
    defaults = settings.model_copy(update={"allowed_hosts": None, "bind_host": "10.1.2.3"})
    with TestClient(create_app(defaults), base_url="http://127.0.0.1:8000") as c:
        assert c.get("/api/v1/runs").status_code == 200
        for host in ("localhost", "[::1]:8000", "10.1.2.3:8000"):
            assert c.get("/api/v1/runs", headers={"Host": host}).status_code == 200, host
        assert c.get("/api/v1/runs", headers={"Host": "rebound.evil.example"}).status_code == 400


# ---- sessions, tokens and login ------------------------------------------------------------------------------------

def login(client, token: str = TOKEN):
    page = client.get("/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return client.post("/login", data={"csrf_token": csrf, "token": token, "next": "/"}, follow_redirects=False)


def test_failed_logins_are_throttled_per_address(settings):
    with TestClient(create_app(settings.model_copy(update={"api_token": TOKEN}))) as c:
        for _ in range(10):
            assert login(c, "wrong-" * 6).status_code == 401
        refused = login(c, TOKEN)  # even the right token: a throttled guesser must learn nothing
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
        r = c.get("/api/v1/runs", headers=BEARER)
        assert r.status_code == 429 and "Retry-After" in r.headers  # the fast path defers to the throttle too


def test_wrong_bearer_tokens_are_throttled(settings):
    with TestClient(create_app(settings.model_copy(update={"api_token": TOKEN}))) as c:
        wrong = {"Authorization": "Bearer " + "x" * 40}
        assert [c.get("/api/v1/runs/1", headers=wrong).status_code for _ in range(10)] == [401] * 10
        r = c.get("/api/v1/runs", headers=BEARER)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) <= 60
        assert c.get("/api/v1/runs").status_code == 401  # no token at all is not a guess


def test_a_token_change_and_a_logout_end_sessions(settings):
    app = create_app(settings.model_copy(update={"api_token": TOKEN}))
    with TestClient(app) as c:
        assert login(c).status_code == 303 and c.get("/api/v1/runs").status_code == 200
        cookie = c.cookies.get("fitboard_session")
    other = settings.model_copy(update={"api_token": "another-token-" + "z" * 30})
    with TestClient(create_app(other), cookies={"fitboard_session": cookie}) as c:
        assert c.get("/api/v1/runs").status_code == 401  # signed under the old token: refused
        assert c.get("/runs/new", follow_redirects=False).status_code == 303
    with TestClient(app) as c:
        assert login(c).status_code == 303
        copied = c.cookies.get("fitboard_session")
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', c.get("/").text).group(1)
        assert c.post("/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    with TestClient(app, cookies={"fitboard_session": copied}) as c:
        assert c.get("/api/v1/runs").status_code == 401  # a copy of the cookie does not outlive the logout


def test_short_tokens_refuse_to_start(settings, tmp_path):
    with pytest.raises(SystemExit, match="at least 32"):
        create_app(settings.model_copy(update={"api_token": "s3cret"}))
    env = {"FITBOARD_HOME": str(tmp_path / "h"), "FITBOARD_API_TOKEN": "s3cret", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "fitboard.worker.cli", "web", "--port", "1"], env=env,
                          capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0 and "at least 32" in out.stderr


def test_secret_file_and_home_are_private(settings):
    create_app(settings)
    home = settings.home
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "session_secret").stat().st_mode) == 0o600


def test_the_session_cookie_is_secure_when_asked_or_over_https(settings):
    with TestClient(create_app(settings.model_copy(update={"cookie_secure": True}))) as c:
        assert "secure" in c.get("/runs/new").headers["set-cookie"].lower()
    with TestClient(create_app(settings), base_url="https://testserver") as c:
        assert "secure" in c.get("/runs/new").headers["set-cookie"].lower()
    with TestClient(create_app(settings)) as c:
        assert "secure" not in c.get("/runs/new").headers["set-cookie"].lower()


# ---- headers -------------------------------------------------------------------------------------------------------

def test_security_headers_on_a_page_and_an_api_answer(client):
    run_id = queued_run(client)
    for r in (client.get("/runs/new"), client.get(f"/api/v1/runs/{run_id}"), client.get("/api/v1/runs/424242"),
              client.get("/docs")):
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "same-origin"
    for path in ("/", "/runs/new", f"/runs/{run_id}", "/datasets", "/docs"):
        page = client.get(path).text
        inline = [s for s in re.findall(r"<script([^>]*)>", page) if "src=" not in s and "application/json" not in s]
        assert not inline and ' style="' not in page, path  # the CSP would block them


def test_an_svg_in_a_dataset_is_not_served(client, settings, data_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(data_root / "digits", root / "digits")
    jpgs = sorted((root / "digits").rglob("*.jpg"))
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>'
    with TestClient(create_app(settings.model_copy(update={"data_root": root}))) as c:
        assert c.get("/datasets/digits").status_code == 200
        first = c.get("/datasets/digits/images/0")
        assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
        jpgs[0].write_bytes(svg)  # the file a CSV row names now holds a script
        (root / "digits" / "evil.svg").write_bytes(svg)
        for k in range(3):
            r = c.get(f"/datasets/digits/images/{k}")
            assert "svg" not in r.headers["content-type"] and b"<script>" not in r.content


# ---- CSV -----------------------------------------------------------------------------------------------------------

def test_csv_cells_that_would_be_formulas_are_quoted(client, sqlite_engine):
    ids = [queued_run(client, name) for name in ("=HYPERLINK(\"http://evil.example\")", "+1", "@SUM(A1)", "-2")]
    for run_id in ids:
        finish_by_hand(sqlite_engine, run_id, acc=0.8)
    table = client.get(f"/api/v1/compare?ids={','.join(map(str, ids))}&format=csv").text
    assert "'=HYPERLINK" in table and "'+1" in table and "'@SUM" in table and "'-2" in table
    assert ",=" not in table and ",-0." in table  # negative differences stay numbers
    epochs = client.get(f"/api/v1/runs/{ids[0]}/epochs?format=csv").text
    assert epochs.splitlines()[1].startswith("1,1,")  # stage and epoch 1-based, for people


# ---- real HTTP: chunked bodies and event streams -------------------------------------------------------------------

def test_a_chunked_2mb_body_gets_413(settings):
    with live_app(settings) as (base, _):
        chunks = (b"x" * 65536 for _ in range(32))  # no Content-Length: Transfer-Encoding chunked
        r = requests.post(f"{base}/api/v1/runs", data=chunks, headers={"Content-Type": "application/json"},
                          timeout=30)
        assert r.status_code == 413 and r.json() == {"detail": "request body larger than 1 MB"}
        big = requests.post(f"{base}/api/v1/runs", data=b"x" * (2 << 20), timeout=30)
        assert big.status_code == 413


def open_stream(url: str, opened: list, stop: threading.Event) -> None:
    with requests.get(url, stream=True, timeout=30) as r:
        opened.append(r.status_code)
        for _ in r.iter_lines():
            if stop.is_set():
                return


def test_event_streams_are_capped_share_one_poller_and_end(settings, sqlite_engine):
    capped = settings.model_copy(update={"max_streams": 3, "stream_lifetime": 2.0})
    with live_app(capped) as (base, app):
        run_id = requests.post(f"{base}/api/v1/runs", json=tiny_recipe(name="watched"), timeout=30).json()["id"]
        url = f"{base}/api/v1/runs/{run_id}/events"
        opened, stop = [], threading.Event()
        threads = [threading.Thread(target=open_stream, args=(url, opened, stop), daemon=True) for _ in range(3)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(opened) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert opened == [200, 200, 200]
        feeds = app.state.streams.feeds
        assert list(feeds) == [run_id] and feeds[run_id].listeners == 3  # one feed (and one poller) for three streams
        busy = requests.get(url, timeout=10)
        assert busy.status_code == 503 and int(busy.headers["Retry-After"]) > 0
        started = time.monotonic()
        for t in threads:
            t.join(timeout=15)  # each stream ends by itself after its lifetime (2 s); the client reconnects
        assert not any(t.is_alive() for t in threads) and time.monotonic() - started < 10
        deadline = time.monotonic() + 5
        while app.state.streams.open and time.monotonic() < deadline:  # the server side unwinds just after
            time.sleep(0.05)
        assert app.state.streams.open == 0 and not app.state.streams.feeds
        stop.set()
        finish_by_hand(sqlite_engine, run_id, acc=0.9, epochs=2)
        t0 = time.monotonic()
        text = requests.get(url, timeout=10).text  # a finished run's stream ends at once, after every row
        assert time.monotonic() - t0 < 2 and text.count("event: epoch") == 2 and '"succeeded"' in text


# ---- predict: images checked in full before queueing, a failed prediction is not a 200 ----------------------------

def jpeg(width: int, height: int, quality: int = 90) -> bytes:
    """A real JPEG of noise (so it does not compress to nothing), width x height pixels."""
    import io

    from PIL import Image

    data = bytes(((x * 7 + y * 13) * 31) % 251 for y in range(16) for x in range(16) for _ in range(3))
    tile = Image.frombytes("RGB", (16, 16), data).resize((width, height))
    out = io.BytesIO()
    tile.save(out, "JPEG", quality=quality)
    return out.getvalue()


def model_run(client, engine) -> int:
    """A succeeded run whose exported model the store lists (no predictor needed to check uploads)."""
    from fitboard.app.store.db import session_scope
    from fitboard.app.store.models import Artifact

    run_id = queued_run(client, "with-model")
    finish_by_hand(engine, run_id, acc=0.9)
    with session_scope(engine) as s:
        s.add(Artifact(run_id=run_id, kind="model", size=123))
    return run_id


def test_a_truncated_jpeg_is_422_naming_it_before_anything_is_queued(client, sqlite_engine):
    from fitboard.app.store.models import Prediction

    run_id = model_run(client, sqlite_engine)
    good = jpeg(64, 64)
    for cut in (good[: len(good) // 2], good[: len(good) - 40]):  # PIL's verify() passed both
        r = client.post(f"/api/v1/runs/{run_id}/predict",
                        files=[("images", ("ok.jpg", good, "image/jpeg")), ("images", ("cut.jpg", cut, "image/jpeg"))])
        assert r.status_code == 422, r.text
        assert r.json()["detail"] == [{"loc": "images[1] (cut.jpg)", "msg": "truncated or corrupt (OSError)"}]
    from sqlmodel import Session, select
    with Session(sqlite_engine) as s:
        assert s.exec(select(Prediction)).all() == []  # nothing was queued for a predictor


def test_the_pixels_of_one_request_are_bounded_and_the_image_past_the_bound_is_named(client, sqlite_engine):
    from fitboard.app.services.predictions import MAX_REQUEST_PIXELS

    run_id = model_run(client, sqlite_engine)
    big = jpeg(4000, 4000, quality=10)  # 16 megapixels in a small file
    n = MAX_REQUEST_PIXELS // (4000 * 4000) + 1
    r = client.post(f"/api/v1/runs/{run_id}/predict",
                    files=[("images", (f"{i}.jpg", big, "image/jpeg")) for i in range(n)])
    assert r.status_code == 422, r.text
    [problem] = r.json()["detail"]
    assert problem["loc"] == f"images[{n - 1}] ({n - 1}.jpg)" and f"{MAX_REQUEST_PIXELS:,}" in problem["msg"]


def test_a_failed_prediction_is_not_a_200(client, sqlite_engine):
    from fitboard.app.store.db import session_scope
    from fitboard.app.store.predictions import create_prediction, fail_prediction

    run_id = model_run(client, sqlite_engine)
    with session_scope(sqlite_engine) as s:
        pid = create_prediction(s, run_id, ["a.jpg"], ["eA=="]).id
        fail_prediction(s, pid, "the model could not read a.jpg")
    r = client.get(f"/api/v1/predictions/{pid}")
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == [{"loc": "images", "msg": f"prediction {pid} failed: the model could not read a.jpg"}]


# ---- the spec is the behaviour: what the schema says is what the API enforces ---------------------------------------

def test_a_405_names_every_method_the_path_answers_to(client):
    run_id = queued_run(client)
    for path, methods in (("/api/v1/runs", {"GET", "POST"}), (f"/api/v1/runs/{run_id}", {"GET", "PATCH", "DELETE"}),
                          ("/api/v1/datasets", {"GET", "POST"})):
        r = client.options(path, headers=BEARER)
        assert r.status_code == 405, (path, r.text)
        assert methods <= {m.strip() for m in r.headers["allow"].split(",")}, (path, r.headers["allow"])
        assert "OPTIONS" not in r.headers["allow"]


def test_booleans_are_strict_and_tags_are_what_the_schema_says(client):
    run_id = queued_run(client)
    for value in (0, 1, "true", "yes"):
        assert "archived" in problems(client.patch(f"/api/v1/runs/{run_id}", json={"archived": value}))
    assert "pretrained" in problems(client.post("/api/v1/runs", json=tiny_recipe(pretrained=0)))
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    tag_item = schema["RunPatch"]["properties"]["tags"]["items"]
    for tag in ("", " a", "a b", "x" * 41):
        assert "tags[0]" in problems(client.patch(f"/api/v1/runs/{run_id}", json={"tags": [tag]}))
        assert not re.fullmatch(tag_item["pattern"].strip("^$"), tag)  # the schema refuses it too
    done = client.patch(f"/api/v1/runs/{run_id}", json={"tags": ["a.b:c"], "archived": True})
    assert (done.json()["tags"], done.json()["archived"]) == (["a.b:c"], True)


def test_constraints_the_api_enforces_are_stated_in_the_schema(client):
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    mixup = schemas["StageSpec"]["properties"]["mixup"]
    assert (mixup["exclusiveMinimum"], mixup["maximum"]) == (0, 1)
    stage = {**tiny_recipe()["stages"][0], "mixup": 0}
    assert "stages[0].mixup" in problems(client.post("/api/v1/runs", json=tiny_recipe(stages=[stage])))
    assert schemas["RunSpec"]["properties"]["stages"]["minItems"] == 1
    sweep_body = doc["paths"]["/api/v1/sweeps"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    body = schemas[sweep_body["$ref"].rsplit("/", 1)[1]]
    assert body["properties"]["vary"]["minProperties"] == 1 and body["properties"]["seeds"]["minItems"] == 1
    assert "vary" in problems(client.post("/api/v1/sweeps", json={"base": tiny_recipe(), "vary": {}}))
    assert "seeds[0]" in problems(client.post("/api/v1/sweeps", json={"base": tiny_recipe(), "vary": {"seed": [1, 2]},
                                                                  "seeds": [{}]}))
    ids = next(p for p in doc["paths"]["/api/v1/compare"]["get"]["parameters"] if p["name"] == "ids")
    for bad in ("01,2", "0,1", "1", "1,,2", "1, 2"):
        assert not re.fullmatch(ids["schema"]["pattern"].strip("^$"), bad)
        assert client.get(f"/api/v1/compare?ids={bad}").status_code == 422, bad
    run_id = queued_run(client)
    assert client.get(f"/api/v1/compare?ids={run_id},{run_id}").json()["runs"][0]["id"] == run_id  # a repeat: one run
