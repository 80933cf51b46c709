"""The distribution: a wheel that carries templates, migrations and static files, installs without torch, and runs."""
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

from tests.served import free_port

ROOT = Path(__file__).resolve().parent.parent
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "__pycache__", "build", "dist", "*.egg-info", ".pytest_cache",
                                    "test-artifacts")


def build_wheel(tmp_path: Path) -> Path:
    """Build the wheel from a copy of the source tree (the checkout itself stays clean)."""
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCE)
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(src),
                    "-w", str(dist)], check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = dist.glob("fitboard-*.whl")
    return wheel


def test_wheel_ships_templates_migrations_static_files_and_demo_data(tmp_path):
    names = set(zipfile.ZipFile(build_wheel(tmp_path)).namelist())
    assert {"app/templates/run.html", "app/templates/_macros.html", "app/migrations/env.py",
            "app/migrations/script.py.mako", "app/migrations/versions/0001_initial_schema.py",
            "app/static/run.js", "app/static/fitboard.css", "app/core/data/digits.csv.gz"} <= names
    assert not any(n.startswith(("templates/", "migrations/", "tests/")) for n in names)  # nothing loose at the top
    # the public Python API: client/ ships as the fitboard package
    assert {"fitboard/__init__.py", "fitboard/client.py", "fitboard/fastai.py", "fitboard/tracker.py"} <= names
    assert not any(n.startswith("client/") for n in names)


def test_web_install_without_torch_migrates_writes_demo_data_and_serves_pages(tmp_path):
    wheel = build_wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([venv / "bin" / "pip", "install", "-q", str(wheel)], check=True, capture_output=True, text=True,
                   timeout=900)
    py, fitboard = venv / "bin" / "python", venv / "bin" / "fitboard"
    # The web install has no torch.
    assert subprocess.run([py, "-c", "import torch"], capture_output=True).returncode != 0
    run_dir = tmp_path / "elsewhere"  # not the checkout: the installed package must find its own files
    run_dir.mkdir()
    env = {**os.environ, "FITBOARD_HOME": str(tmp_path / "home")}
    env.pop("FITBOARD_DATABASE_URL", None)
    env.pop("FITBOARD_BROKER_URL", None)
    env.pop("FITBOARD_API_TOKEN", None)

    def fitboard_cmd(*args):
        return subprocess.run([fitboard, *args], cwd=run_dir, env=env, capture_output=True, text=True, timeout=120)

    upgraded = fitboard_cmd("db", "upgrade")
    assert upgraded.returncode == 0 and "database at head" in upgraded.stdout, upgraded.stderr
    demo = fitboard_cmd("demo-data", "--limit", "20")
    assert demo.returncode == 0, demo.stderr
    assert len(list((tmp_path / "home" / "datasets" / "digits" / "train_images").glob("*.jpg"))) == 20
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
    finally:
        web.terminate()
        web.wait(timeout=30)


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
