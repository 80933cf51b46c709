"""The distribution: a wheel that carries templates, migrations and static files; installed light it is the client
alone, with [server] the web side without torch, and it runs."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.api_fixtures import *  # noqa: F401,F403  settings
from tests.helpers import tiny_recipe
from tests.live import live_app
from tests.served import free_port
from tests.store_fixtures import *  # noqa: F401,F403

ROOT = Path(__file__).resolve().parent.parent
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "node_modules", "__pycache__", "build", "dist", "*.egg-info",
                                    ".pytest_cache", ".ruff_cache", ".import_linter_cache", "test-artifacts")


def build_wheel(tmp_path: Path) -> Path:
    """Build the wheel from a copy of the source tree (the checkout itself stays clean)."""
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCE)
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(src),
                    "-w", str(dist)], check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = dist.glob("fitboard-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built once for every test here."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_wheel_ships_templates_migrations_static_files_and_demo_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"fitboard/templates/run.html", "fitboard/templates/_macros.html", "fitboard/migrations/env.py",
            "fitboard/migrations/script.py.mako", "fitboard/migrations/versions/0001_initial_schema.py",
            "fitboard/app/static/run.js", "fitboard/app/static/fitboard.css", "fitboard/app/core/data/digits.csv.gz",
            "fitboard/worker/tasks.py", "fitboard/__init__.py", "fitboard/client.py", "fitboard/fastai.py"} <= names
    # One import name: nothing at the top of site-packages but fitboard and its metadata (no app, worker, client).
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"fitboard"}


def installed_env(home: Path) -> dict:
    """The environment an installed fitboard runs in: its own FITBOARD_HOME, no other FITBOARD_ setting, and no
    PYTHONPATH (which would put the checkout's code before the installed wheel's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FITBOARD_") and k != "PYTHONPATH"}
    return {**env, "FITBOARD_HOME": str(home)}


def install(tmp_path: Path, wheel: Path, extras: str = "") -> Path:
    """A fresh venv with the wheel installed (its dependencies from the package index); the venv's folder."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # --no-compile: Python writes the bytecode of what it imports anyway; compiling every module up front doubled
    # the install's time (31 s against 16 s for [server])
    # Without PYTHONPATH: a checkout on it (with an editable install's fitboard.egg-info) made pip take fitboard for
    # installed already and leave it out of the venv.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([venv / "bin" / "pip", "install", "-q", "--no-compile", "--disable-pip-version-check",
                    f"{wheel}{extras}"], check=True, capture_output=True, text=True, timeout=900, env=env)
    return venv


def test_light_install_is_the_client_alone_and_it_works_against_a_server(tmp_path, settings, wheel):
    """`pip install fitboard` (no extras): none of the server's or the trainer's packages, yet fitboard.Client and the
    client commands work against a served fitboard, and the server commands say which extra to install."""
    venv = install(tmp_path, wheel)
    py, fitboard = venv / "bin" / "python", venv / "bin" / "fitboard"
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    env = installed_env(tmp_path / "laptop")

    def python(code: str, *args) -> subprocess.CompletedProcess:
        return subprocess.run([py, "-c", code, *args], cwd=run_dir, env=env, capture_output=True, text=True,
                              timeout=120)

    server_side = ["fastapi", "uvicorn", "starlette", "celery", "sqlmodel", "sqlalchemy", "alembic", "optuna", "torch",
                   "psycopg2", "pydantic", "PIL", "pandas"]
    found = python("import importlib.util, sys; print([m for m in sys.argv[1:] if importlib.util.find_spec(m)])",
                   *server_side)
    assert found.returncode == 0 and found.stdout.strip() == "[]", found.stdout + found.stderr
    callback = python("import fitboard.fastai")
    assert "pip install 'fitboard[fastai]'" in callback.stderr and "ImportError" in callback.stderr
    up = subprocess.run([fitboard, "up"], cwd=run_dir, env=env, capture_output=True, text=True, timeout=120)
    assert up.returncode == 1 and "pip install 'fitboard[train]'" in up.stderr and "Traceback" not in up.stderr
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(tiny_recipe(name="from-the-cli")))
    with live_app(settings) as (base, _):
        client = python("import json, sys, fitboard\n"
                        "c = fitboard.Client(sys.argv[1])\n"
                        "run = c.submit(json.loads(sys.argv[2]))\n"
                        "print(json.dumps([run.status, [(r['id'], r['name']) for r in c.runs()]]))",
                        base, json.dumps(tiny_recipe(name="from-the-client")))
        assert client.returncode == 0, client.stderr
        status, listed = json.loads(client.stdout)
        assert status == "queued" and [name for _, name in listed] == ["from-the-client"]
        cli_env = {**env, "FITBOARD_URL": base}
        submitted = subprocess.run([fitboard, "submit", "recipe.yaml"], cwd=run_dir, env=cli_env, capture_output=True,
                                   text=True, timeout=120)
        assert submitted.returncode == 0 and submitted.stdout.startswith(f"run {listed[0][0] + 1} queued: {base}")
        runs = subprocess.run([fitboard, "runs"], cwd=run_dir, env=cli_env, capture_output=True, text=True,
                              timeout=120)
        assert runs.returncode == 0 and runs.stdout.splitlines()[-1] == "2 of 2 runs", runs.stderr
        assert "from-the-cli" in runs.stdout and "from-the-client" in runs.stdout
    assert not (tmp_path / "laptop").exists()  # a client keeps nothing on the laptop


def test_web_install_without_torch_migrates_writes_demo_data_and_serves_pages(tmp_path, wheel):
    venv = install(tmp_path, wheel, "[server]")
    py, fitboard = venv / "bin" / "python", venv / "bin" / "fitboard"
    run_dir = tmp_path / "elsewhere"  # not the checkout: the installed package must find its own files
    run_dir.mkdir()

    env = installed_env(tmp_path / "home")

    def importable(*modules: str) -> list[str]:
        """Which of the modules the installed Python imports (asked in one process: each start costs seconds)."""
        code = ("import importlib, sys\nfor m in sys.argv[1:]:\n    try:\n        importlib.import_module(m)\n"
                "        print(m)\n    except ImportError:\n        pass")
        found = subprocess.run([py, "-c", code, *modules], cwd=run_dir, env=env, capture_output=True, text=True)
        assert found.returncode == 0, found.stderr
        return found.stdout.split()

    # The web install has no torch; its one import name is fitboard (a user's own app or worker module is theirs).
    assert importable("torch", "fitboard", "fitboard.app.web.app", "app", "worker") == ["fitboard",
                                                                                         "fitboard.app.web.app"]

    def fitboard_cmd(*args):
        return subprocess.run([fitboard, *args], cwd=run_dir, env=env, capture_output=True, text=True, timeout=120)

    upgraded = fitboard_cmd("db", "upgrade")
    assert upgraded.returncode == 0 and "database at head" in upgraded.stdout, upgraded.stderr
    demo = fitboard_cmd("demo-data", "--limit", "300")  # every class in both splits, for up below
    assert demo.returncode == 0, demo.stderr
    assert len(list((tmp_path / "home" / "datasets" / "digits" / "train_images").glob("*.jpg"))) == 300
    # `fitboard doctor` runs on a web host too: no torch is a WARN with its reason, not a crash
    doctor = fitboard_cmd("doctor", "--json")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    gpus = next(c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "gpus")
    assert gpus["status"] == "WARN" and "torch is not installed" in gpus["detail"]
    port = free_port()
    web = subprocess.Popen([fitboard, "web", "--port", str(port)], cwd=run_dir, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        page = _get(f"http://127.0.0.1:{port}/", web)
        assert "fitboard" in page and "Runs" in page
        assert _get(f"http://127.0.0.1:{port}/static/fitboard.css", web).startswith("/* fitboard")
        assert _get(f"http://127.0.0.1:{port}/static/run.js", web).startswith("//")
        # fitboard.Client works in the web-only install (httpx only, no pandas or torch): the runs the API lists
        client = subprocess.run([py, "-c", "import sys, fitboard; print(len(fitboard.Client(sys.argv[1]).runs()))",
                                 f"http://127.0.0.1:{port}"], cwd=run_dir, env=env, capture_output=True, text=True,
                                timeout=60)
        assert client.returncode == 0 and client.stdout.strip() == "0", client.stderr
    finally:
        web.terminate()
        web.wait(timeout=30)
    # With the training packages beside it (this interpreter's, linked in rather than installed again: torch is
    # gigabytes), the same install runs `fitboard up`: web, a worker and a predictor, from the wheel's own files.
    purelib = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    (purelib / "zz_training_packages.pth").write_text("\n".join(p for p in sys.path if p.endswith("site-packages")))
    assert importable("torch", "app") == ["torch"]  # the worker `up` starts below imports fitboard.worker.engine
    port = free_port()
    # the same home: up registers the 300-image demo dataset written above instead of writing all 1,797 images
    up = subprocess.Popen([fitboard, "up", "--port", str(port)], cwd=run_dir, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        workers = []
        while not workers and time.monotonic() < deadline:
            workers = json.loads(_get(f"http://127.0.0.1:{port}/api/v1/workers", up))
            time.sleep(0.5)
        assert workers, "fitboard up started no worker that heartbeats"
    finally:
        up.terminate()
        up.wait(timeout=60)
    assert up.returncode == 0


def _get(url: str, proc: subprocess.Popen, timeout: float = 60) -> str:
    """GET url once the server answers (fails with the server's output if it exits)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"fitboard web exited:\n{proc.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                assert response.status == 200
                return response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
