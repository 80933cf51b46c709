"""A retried run's page: the time over all its attempts, and each attempt's ending said once. Real migrated SQLite,
the run moved through claim -> requeue -> claim -> cancel by the store's own functions."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from fitboard.app.core.settings import Settings
from fitboard.app.store.attempts import list_attempts
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import Run, RunAttempt
from fitboard.app.store.recovery import requeue_run
from fitboard.app.store.runs import claim_run, create_run, get_run, mark_cancelled, request_cancel
from fitboard.app.web.app import create_app
from tests.helpers import tiny_recipe
from tests.store_fixtures import *  # noqa: F401,F403

T0 = datetime(2026, 3, 1, 10, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def client(tmp_path, sqlite_url, data_root):
    with TestClient(create_app(Settings(home=tmp_path, database_url=sqlite_url, data_root=data_root))) as c:
        yield c


def _set_times(session, run_id: int, spans: list[tuple[int, int]]) -> None:
    """Attempt n ran from T0 + start to T0 + end seconds; the run's own start and finish are its last attempt's."""
    for n, (start, end) in enumerate(spans, start=1):
        session.exec(update(RunAttempt).where(RunAttempt.run_id == run_id, RunAttempt.attempt == n).values(
            started_at=T0 + timedelta(seconds=start), ended_at=T0 + timedelta(seconds=end)))
    session.exec(update(Run).where(Run.id == run_id).values(started_at=T0 + timedelta(seconds=spans[-1][0]),
                                                            finished_at=T0 + timedelta(seconds=spans[-1][1])))


def test_a_retried_run_says_the_time_over_all_attempts_and_each_ending_once(client):
    engine = client.app.state.engine
    with session_scope(engine) as s:
        run_id = create_run(s, tiny_recipe(name="retried"), techniques=[]).id
        claim_run(s, run_id, "gpu-a")
        requeue_run(s, run_id, "worker gpu-a lost (no heartbeat for 30 s)")
        claim_run(s, run_id, "gpu-b")
        request_cancel(s, run_id)
        mark_cancelled(s, run_id)
        _set_times(s, run_id, [(0, 125), (300, 307)])  # 2 min 5 s, then 7 s
    with session_scope(engine) as s:
        run, attempts = get_run(s, run_id), list_attempts(s, run_id)
        assert [(a.outcome, a.reason) for a in attempts] == [
            ("requeued", "worker gpu-a lost (no heartbeat for 30 s)"), ("cancelled", "cancelled")]
        total = sum((a.ended_at - a.started_at).total_seconds() for a in attempts)
        last = run.duration
    assert (total, last) == (132, 7)
    page = client.get(f"/runs/{run_id}").text
    head = re.sub(r"\s+", " ", page[page.index('<p class="muted small">'):page.index("</p>", page.index("<h1>"))])
    assert "took 2 min 12 s over 2 attempts (the last 7 s)" in head  # 132 s in all, not the last attempt's 7 s
    assert "took 7 s ·" not in head and "attempt 2" in head
    table = page[page.index('id="attempts"'):page.index("</table>", page.index('id="attempts"'))]
    endings = [re.sub(r"\s+", " ", cells[-1]).strip()
               for cells in (re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
                             for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)) if cells]
    assert endings == ["requeued: worker gpu-a lost (no heartbeat for 30 s)", "cancelled"]  # not "cancelled: cancelled"


def test_one_attempt_says_its_time_alone(client):
    engine = client.app.state.engine
    with session_scope(engine) as s:
        run_id = create_run(s, tiny_recipe(name="once"), techniques=[]).id
        claim_run(s, run_id, "gpu-a")
        request_cancel(s, run_id)
        mark_cancelled(s, run_id)
        _set_times(s, run_id, [(0, 42)])
    page = re.sub(r"\s+", " ", client.get(f"/runs/{run_id}").text)
    assert "took 42 s" in page and "attempts" not in page.split("took 42 s")[1][:40]
