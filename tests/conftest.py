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
