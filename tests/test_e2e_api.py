"""End to end through the REST API: `fitboard up`, then `fitboard submit --follow` trains the demo data live."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.served import serving


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with serving(tmp_path_factory.mktemp("up-api")) as server:
        yield server


def get(url: str):
    return json.load(urllib.request.urlopen(url, timeout=10))


def test_up_registers_the_demo_dataset(served):
    datasets = get(f"{served.url}/api/v1/datasets")
    assert [d["name"] for d in datasets] == ["digits"]
    assert datasets[0]["report"]["n_train"] + datasets[0]["report"]["n_valid"] == 1797


def test_submit_follow_shows_the_live_table_until_success(served, tmp_path):
    recipe = yaml.safe_load(open("recipes/demo.yaml"))
    recipe.update(name="follow-me", arch="squeezenet1_1")  # the fast arch: this test is about the flow
    recipe["stages"] = [{"epochs": 2, "size": 32, "presize": 40, "bs": 64, "lr": 3e-3}]
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    proc = subprocess.run([sys.executable, "-m", "fitboard.worker.cli", "submit", str(path), "--url", served.url,
                           "--follow"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert "queued" in lines[0] and any(line.split()[:2] == ["stage", "epoch"] for line in lines)
    assert sum(1 for line in lines if line.split()[:2] in (["1", "1"], ["1", "2"])) == 2  # shown 1-based
    assert lines[-1].endswith("succeeded")
    assert "\r" not in proc.stderr + proc.stdout and "\033" not in proc.stderr  # not a terminal: no progress bar
    runs = get(f"{served.url}/api/v1/runs?name=follow-me")["items"]
    assert runs[0]["status"] == "succeeded" and runs[0]["best_accuracy"] is not None


def test_submit_refuses_a_bad_recipe_naming_the_field(served, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", "dataset": "digits",
                                    "stages": [{"epochs": 1, "size": 32, "presize": 8}]}))
    proc = subprocess.run([sys.executable, "-m", "fitboard.worker.cli", "submit", str(path), "--url", served.url],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "stages[0].presize" in proc.stderr


def children_of(pid: int) -> list[int]:
    """Live child process ids, read from /proc."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.append(int(stat.parent.name))
    return kids


def test_sigterm_stops_web_and_worker(served):
    """Last in this file: it stops the module's server (whose teardown then finds it exited with 0)."""
    server = served
    worker_pids = children_of(server.proc.pid)
    assert worker_pids, "the worker should be a child of fitboard up"
    assert server.stop() == 0
    time.sleep(0.5)
    assert not [pid for pid in worker_pids if Path(f"/proc/{pid}").exists()
                and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
