"""The compose files are valid and keep what the fleet needs; Debian's docker-compose (installed by
scripts/ensure_compose.sh, no Docker engine needed) accepts them as well."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ONE_HOST, GPU_HOST = ROOT / "docker-compose.yml", ROOT / "docker-compose.gpu-host.yml"
HOST_ENV = {"FITBOARD_DATABASE_URL": "postgresql://fitboard:pw@web-host:5432/fitboard",
            "FITBOARD_BROKER_URL": "redis://web-host:6379/0", "FITBOARD_DATASETS": "/mnt/fitboard/datasets",
            "FITBOARD_ARTIFACTS": "/mnt/fitboard/artifacts"}


def _volumes(service: dict) -> set[str]:
    return {v.split(":")[0] for v in service.get("volumes", [])}


def _gpu(service: dict) -> dict:
    return service["deploy"]["resources"]["reservations"]["devices"][0]


def test_one_host_compose_parses_with_postgres_healthchecks_and_shared_volumes():
    compose = yaml.safe_load(ONE_HOST.read_text())
    services = compose["services"]
    assert {"postgres", "redis", "web", "predictor", "worker-gpu0"} <= set(services)
    env = compose["x-fitboard-env"]
    token = env["FITBOARD_API_TOKEN"]
    assert token.startswith("${FITBOARD_API_TOKEN:?") and token.endswith("}")  # refuses to start without a token
    database = env["FITBOARD_DATABASE_URL"]
    assert database.startswith("postgresql://") and "@postgres:5432/" in database
    assert "--appendonly" in services["redis"]["command"]  # queued runs survive a Redis restart
    for name in ("postgres", "redis", "web"):
        assert services[name]["healthcheck"]["test"], name
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])
    for name in ("web", "worker-gpu0"):
        assert services[name]["depends_on"] == {"postgres": {"condition": "service_healthy"},
                                                "redis": {"condition": "service_healthy"}}, name
    # web and workers see the same datasets and artifacts
    assert {"datasets", "artifacts"} <= _volumes(services["web"]) & _volumes(services["worker-gpu0"])
    assert "artifacts" in _volumes(services["predictor"]) and services["predictor"]["command"][-1] == "predictor"
    assert "postgres-data" in _volumes(services["postgres"]) and "redis-data" in _volumes(services["redis"])
    assert _gpu(services["worker-gpu0"]) == {"driver": "nvidia", "device_ids": ["0"], "capabilities": ["gpu"]}


def test_gpu_host_compose_runs_workers_alone_against_the_web_hosts_services():
    compose = yaml.safe_load(GPU_HOST.read_text())
    services = compose["services"]
    assert set(services) == {"worker-gpu0"}  # no database, broker or web on a GPU host
    env = compose["x-fitboard-env"]
    for key in ("FITBOARD_DATABASE_URL", "FITBOARD_BROKER_URL"):
        assert env[key].startswith(f"${{{key}:?"), key  # refuses to start without the web host's addresses
    targets = {v.split(":")[-2] if v.endswith((":ro", ":rw")) else v.split(":")[-1]
               for v in services["worker-gpu0"]["volumes"]}
    assert {"/data", "/artifacts", "/fitboard"} <= targets
    assert _gpu(services["worker-gpu0"])["capabilities"] == ["gpu"]


def _compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return None


@pytest.mark.parametrize("path", [ONE_HOST, GPU_HOST], ids=["one-host", "gpu-host"])
def test_docker_compose_config_accepts_the_files(path):
    command = _compose_command()
    if command is None:
        if os.environ.get("CI") == "true":
            pytest.fail("docker-compose is not installed and CI=true requires it (scripts/ensure_compose.sh)")
        pytest.skip("docker-compose is not installed (scripts/ensure_compose.sh installs Debian's)")
    env = {**os.environ, "FITBOARD_API_TOKEN": "x" * 40, **HOST_ENV}
    done = subprocess.run([*command, "-f", str(path), "config"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    assert "worker-gpu0" in resolved["services"]
    # without the mandatory values it stops with the message that says what to set
    bare = {k: v for k, v in os.environ.items() if k not in HOST_ENV and k != "FITBOARD_API_TOKEN"}
    refused = subprocess.run([*command, "-f", str(path), "config"], capture_output=True, text=True, env=bare, cwd=ROOT)
    assert refused.returncode != 0 and "set FITBOARD_" in refused.stderr
