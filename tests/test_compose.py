"""docker-compose.yml is valid YAML and keeps what the fleet needs (no Docker engine runs here to start it)."""
from __future__ import annotations

from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose.yml"


def test_compose_file_parses_and_keeps_the_token_check():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert {"redis", "web"} <= set(services) and any(name.startswith("worker") for name in services)
    token = compose["x-fitboard-env"]["FITBOARD_API_TOKEN"]
    assert token.startswith("${FITBOARD_API_TOKEN:?") and token.endswith("}")  # refuses to start without a token
    assert "--appendonly" in services["redis"]["command"]  # queued runs survive a Redis restart
