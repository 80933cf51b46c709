"""Web fixtures: Settings on the test's own migrated SQLite copy, and a TestClient of the app built from them.

Use with `from tests.api_fixtures import *` (and the store fixtures, for sqlite_url)."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from fitboard.app.core.settings import Settings
from fitboard.app.web.app import create_app

__all__ = ["settings", "client"]


@pytest.fixture
def settings(tmp_path, sqlite_url, data_root) -> Settings:
    """Settings whose home, database and data root are this test's own."""
    return Settings(home=tmp_path, database_url=sqlite_url, data_root=data_root)


@pytest.fixture
def client(settings):
    """The web app on those settings, started (lifespan run) for the test."""
    with TestClient(create_app(settings)) as c:
        yield c
