"""schemathesis against a real server: every operation of the OpenAPI document, fuzzed with the token, must never
answer 5xx, and must answer only documented statuses, content types and body shapes; without the token every
operation but the open ones answers 401."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from fitboard.app.core.settings import Settings
from fitboard.app.services import people
from fitboard.app.store.db import make_engine, session_scope
from fitboard.app.web.openapi import OPEN_PATHS
from tests.helpers import BEARER, TOKEN, finish_by_hand, tiny_recipe
from tests.live import live_app
from tests.store_fixtures import sqlite_template  # noqa: F401  (the migrated SQLite file the server's copy is from)


@pytest.fixture(scope="module")
def server(tmp_path_factory, sqlite_template, data_root):  # noqa: F811
    """A real server over a real SQLite file holding a finished run and a queued one, with a token."""
    home = tmp_path_factory.mktemp("fuzz-home")
    shutil.copyfile(sqlite_template, home / "fitboard.db")
    url = f"sqlite:///{home / 'fitboard.db'}"
    # short streams: an event stream on a queued run ends after a second instead of holding the fuzzer
    config = Settings(home=home, database_url=url, data_root=data_root, api_token=TOKEN, stream_lifetime=1.0,
                      auth_failures_per_minute=10**6)
    with live_app(config) as (base, app):
        for name in ("done", "waiting"):
            r = requests.post(f"{base}/api/v1/runs", json=tiny_recipe(name=name), headers=BEARER, timeout=30)
            assert r.status_code == 201, r.text
        finish_by_hand(make_engine(url), 1, acc=0.9)
        yield base, app


def operations(base: str, app) -> list:
    """Every operation of the server's own OpenAPI document, bound to its URL."""
    schema = schemathesis.openapi.from_dict(app.openapi())
    schema.config.update(base_url=base)
    return [result.ok() for result in schema.get_all_operations()]


def fuzz(operation, mode: GenerationMode, examples: int, check) -> int:
    """Run `check` on up to `examples` generated cases of one operation; returns how many ran."""
    ran = 0

    @given(operation.as_strategy(generation_mode=mode))
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    def run(case):
        nonlocal ran
        ran += 1
        check(case)

    try:
        run()
    except Unsatisfiable:
        assert mode == GenerationMode.NEGATIVE and not ran, operation.label  # nothing to get wrong: no parameters
    return ran


# Every check schemathesis has (`--checks all`: server errors, statuses, content types, headers, body schemas,
# schema-valid input accepted, schema-invalid input refused, Allow on 405, resources used after delete...) over its
# examples, coverage, fuzzing and stateful phases (sequences that feed one call's answer into the next), with a fixed
# seed and a bound on examples per operation that keeps this near a minute here.
ST_EXAMPLES = 10
ST_SEED = 1


# Four writes check what no schema can state: that the dataset or folder a body names exists under the data root,
# and (sweeps, searches) that `vary` or the space names recipe fields. For them alone a schema-valid body may get
# 422; every other check, and every other operation, keeps the default expectations.
STATEFUL_BODIES = ("/api/v1/datasets", "/api/v1/runs", "/api/v1/sweeps", "/api/v1/searches")
CONFIG = "".join(f"""
[[operations]]
include-path = "{path}"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
""" for path in STATEFUL_BODIES)


def test_every_check_and_phase_of_schemathesis_finds_nothing(server, tmp_path):
    base, app = server
    (tmp_path / "openapi.json").write_text(json.dumps(app.openapi()))
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    cmd = [str(Path(sys.executable).parent / "st"), "--config-file", str(tmp_path / "schemathesis.toml"), "run",
           str(tmp_path / "openapi.json"), "--url", base,
           "-H", f"Authorization: Bearer {TOKEN}", "--checks", "all",
           "--phases", "examples,coverage,fuzzing,stateful", "-n", str(ST_EXAMPLES), "--seed", str(ST_SEED),
           "--no-shrink", "--continue-on-failure", "--request-timeout", "30", "--suppress-health-check", "all"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    summary = done.stdout[done.stdout.rfind("SUMMARY"):] if "SUMMARY" in done.stdout else done.stdout[-3000:]
    assert done.returncode == 0, done.stdout[-12000:] + done.stderr[-2000:]
    assert "Tested: 43" in summary and "Stateful" in summary, summary
    print("\n" + summary)


def test_fuzz_without_the_token_every_guarded_call_answers_401(server):
    base, app = server

    def check(case):
        response = case.call(timeout=30)
        if case.path in OPEN_PATHS:
            assert response.status_code == 200, (case.path, response.text)
        else:
            assert response.status_code == 401, (case.method, case.path, response.status_code, response.text)

    total = sum(fuzz(op, GenerationMode.POSITIVE, 5, check) for op in operations(base, app))
    print(f"\nfuzz without the token: {total} cases, all 401 but the open ones")


def test_fuzz_with_a_persons_token_nothing_fails_and_every_answer_is_documented(server):
    base, app = server
    engine = make_engine(app.state.settings.database_url)
    with session_scope(engine) as s:
        people.add_person(s, "fuzz-member", "a fuzzing password")
        people.grant(s, "default", "fuzz-member", "member")
        token = people.create_token(s, people.person(s, "fuzz-member"), "fuzz")[0]
    engine.dispose()
    statuses: dict[int, int] = {}

    def check(case):
        case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        response = case.call(headers={"Authorization": f"Bearer {token}"}, timeout=30)  # over a generated one
        # no 5xx; only documented statuses, content types and body shapes. Whether schema-valid input is accepted
        # is the test above's (with the site token), which knows the writes that check more than a schema states.
        # (negative_data_rejection: the generated Authorization header it judges by is replaced with the token)
        case.validate_response(response, excluded_checks=[positive_data_acceptance, negative_data_rejection])
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    # not DELETE /tokens/{id}: the fuzzer would revoke the very token it fuzzes with (then all is 401, rightly)
    total = sum(fuzz(op, GenerationMode.POSITIVE, 5, check) for op in operations(base, app)
                if op.label != "DELETE /api/v1/tokens/{token_id}")
    assert statuses.get(403), statuses  # a member meets what only admins and site admins may do
    assert statuses.get(200), statuses
    print(f"\nfuzz with a member's token: {total} cases, statuses {dict(sorted(statuses.items()))}")
