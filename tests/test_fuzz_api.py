"""schemathesis against a real server: every operation of the OpenAPI document, fuzzed with the token, must never
answer 5xx, and must answer only documented statuses, content types and body shapes; without the token every
operation but the open ones answers 401."""
from __future__ import annotations

import shutil

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.core.settings import Settings
from app.store.db import make_engine
from app.web.openapi import OPEN_PATHS
from tests.helpers import BEARER, TOKEN, finish_by_hand, tiny_recipe
from tests.live import live_app
from tests.store_fixtures import sqlite_template  # noqa: F401  (the migrated SQLite file the server's copy is from)

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]
EXAMPLES = 100  # per operation and generation mode: ~3,000 cases, under a minute here (the issue allows three)


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


# uvicorn's HTTP parser answers this (400, text/plain) to a request that is not valid HTTP, such as a header the
# fuzzer built with a name or Content-Length no client could send; the app never sees it, so its documented
# responses do not apply.
MALFORMED_HTTP = "Invalid HTTP request received."


def call_and_validate(case) -> None:
    """Call with the token and check the answer against the document, unless the HTTP layer refused the request."""
    response = case.call(headers=BEARER, timeout=30)
    if response.status_code == 400 and response.text.strip() == MALFORMED_HTTP:
        return
    case.validate_response(response, checks=CHECKS, headers=BEARER)


def test_fuzz_every_operation_with_the_token(server):
    base, app = server
    ops, total = operations(base, app), 0
    assert len(ops) == 26  # every operation: retry, attempts, edit, delete, predictions and searches included
    for op in ops:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            total += fuzz(op, mode, EXAMPLES, call_and_validate)
    print(f"\nfuzz with the token: {total} cases over {len(ops)} operations, 0 failures")


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
