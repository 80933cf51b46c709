"""Shared fixtures: a small digits dataset under a temporary data root, and recipe builders."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from fitboard.app.core.demo_data import write_digits
from tests.browser import browser, page  # noqa: F401  (fixtures of the browser tests: chromium, a watched page)

# TestClient sends "Host: testserver"; the served processes are reached as 127.0.0.1.
os.environ.setdefault("FITBOARD_ALLOWED_HOSTS", "localhost,127.0.0.1,::1,testserver")
# Under pytest-xdist several test processes share the cores: one math thread each (torch, OpenMP) trains the tiny models
# as fast as two and stops the processes from fighting over the cores. Set before anything imports torch.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit deprecation noise from torchvision

TINY_IMAGES = 300  # enough for every class in both splits, small enough to train in a second an epoch

# pytest-xdist (--dist loadfile, with --no-loadscope-reorder: by default it orders the files by their number of
# tests, which put 56 quick store tests first and the packaging and schemathesis files last, alone at the end) hands
# the files out in collection order. The longest go first, longest of all first (wall time per file in `make test` on
# 2026-12-07, 2 cores, 4 processes: 60-205 s); the rest keep their order and fill the gaps.
LONGEST_FIRST = ("test_e2e_browser.py", "test_packaging.py", "test_searches.py", "test_queue.py", "test_engine.py",
                 "test_fleet.py", "test_recovery.py", "test_cli.py", "test_browser_every_page.py",
                 "test_list_plans.py", "test_name_walk.py", "test_fair_queue.py", "test_access_matrix.py",
                 "test_fuzz_api.py", "test_e2e_api.py", "test_tracked_exit.py", "test_people.py", "test_callback.py",
                 "test_run_manage.py", "test_notebook.py")


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests keep their order


@pytest.fixture(scope="session")
def fitboard_home(tmp_path_factory) -> Path:
    """FITBOARD_HOME for the whole session, so nothing is written to the user's home."""
    home = tmp_path_factory.mktemp("fitboard-home")
    os.environ["FITBOARD_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def data_root(fitboard_home) -> Path:
    """A data root holding 'digits': 300 of scikit-learn's digits as JPEGs in the Cassava layout."""
    root = fitboard_home / "datasets"
    write_digits(root / "digits", limit=TINY_IMAGES)
    return root
