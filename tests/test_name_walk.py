"""run_gram, each run's name trigrams with its list key and lowered name, kept by triggers: its rows are exactly the
runs' after creates, renames, archiving, deletes and project moves, and a name search through it (every ASCII
fragment of three characters or more) lists exactly the runs the FTS / trigram index finds, page by page in both
directions."""
from __future__ import annotations

import itertools

import pytest
from sqlalchemy import text, update

from fitboard.app.store import run_list
from fitboard.app.store.db import make_engine, session_scope, upgrade
from fitboard.app.store.models import Project, Run
from fitboard.app.store.name_search import trigrams, walkable
from fitboard.app.store.ownership import scope_session
from fitboard.app.store.runs import create_run, delete_run, runs_page, update_run
from tests.store_fixtures import *  # noqa: F401,F403

NAMES = ["Run-ABC-1", "run-abc-10", "lr-sweep-3", "LR-Sweep-30", "mixup_on", "mixup-on", "100%-sure", "a_b_c",
         "ÉLAN-run-1", "élan-run-2", "x" * 200, "tta-run-" + "y" * 150, "un-1", "RUN-1-run-1"]
# ASCII: a fragment with other letters is not walked (SQLite's lower() folds ASCII only, its FTS index all letters)
NEEDLES = ["run", "RUN-1", "un-1", "abc-1", "sweep-3", "%-s", "a_b", "_on", "lan-run", "xxxx", "yyy-", "zzz"]


def _fill(engine) -> list[int]:
    """Each name four times over (later copies renamed, archived, moved to project 2 or deleted), in creation order."""
    ids = []
    with session_scope(engine) as s:
        s.add(Project(id=2, name="other"))
        s.flush()
        for _ in range(4):
            for name in NAMES:
                ids.append(create_run(s, {"name": name, "dataset": "pets"}).id)
    with session_scope(engine) as s:
        for i, run_id in enumerate(ids):
            if i % 5 == 1:
                update_run(s, run_id, {"name": NAMES[(i + 3) % len(NAMES)].upper()})
            if i % 4 == 2:
                update_run(s, run_id, {"archived": True})
            if i % 9 == 4:
                update_run(s, run_id, {"archived": True})
                update_run(s, run_id, {"archived": False})
            if i % 6 == 3:  # moved by SQL (as the scale bench does): the triggers follow any UPDATE
                s.exec(update(Run).where(Run.id == run_id).values(project_id=2))
            if i % 3 == 0:
                s.exec(update(Run).where(Run.id == run_id).values(status="failed"))
            if i % 11 == 7:  # only a finished run is deleted
                s.exec(update(Run).where(Run.id == run_id).values(status="failed"))
                delete_run(s, run_id)
    return ids


def _expected_rows(engine) -> set[tuple]:
    """run_gram as it should be: every run's trigrams of its database-lowered name, with its key and that name."""
    with engine.connect() as conn:
        runs = conn.execute(text("SELECT id, lower(name), project_id, archived, created_at FROM run")).all()
    return {(g, project, bool(archived), str(created), run_id, name)
            for run_id, name, project, archived, created in runs for g in trigrams(name)}


def test_run_gram_holds_every_runs_trigrams_and_nothing_else(db_engine):
    _fill(db_engine)
    with db_engine.connect() as conn:
        rows = conn.execute(text("SELECT gram, project_id, archived, created_at, run_id, name FROM run_gram")).all()
    got = {(g, p, bool(a), str(c), r, name) for g, p, a, c, r, name in rows}
    assert len(rows) == len(got)  # no row twice
    assert got == _expected_rows(db_engine)
    assert any(len(g) == 3 and g.startswith("é") for g, *_ in got)  # lowered by the database, as it matches names


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_migration_fills_run_gram_from_the_runs_already_there(backend, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'old.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_empty_url")
    upgrade(url, "0014")
    names = ["aaaaaaa", "Run-RUN-run-1", "ab", "ÉLAN-élan", "x" * 200, "run-1", "run-1"]  # repeats, short, twins
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for i, name in enumerate(names):
                conn.execute(text("INSERT INTO run (name, dataset, spec, status, cancel_requested, created_at, "
                                  "attempt, techniques, archived) VALUES (:n, 'pets', '{}', 'succeeded', FALSE, "
                                  ":t, 1, '[]', :a)"), {"n": name, "t": f"2026-01-0{i + 1} 00:00:00", "a": i % 2 == 1})
        upgrade(url)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT gram, project_id, archived, created_at, run_id, name FROM run_gram")).all()
        got = {(g, p, bool(a), str(c), r, name) for g, p, a, c, r, name in rows}
        assert len(rows) == len(got) == len(_expected_rows(engine))  # each run's distinct trigrams, none twice
        assert got == _expected_rows(engine)
        assert sum(1 for g, *_ in got if g == "aaa") == 1 and not any(r[5] == "ab" for r in got)
    finally:
        engine.dispose()


def _walk(session, needle: str, order: str, archived, limit: int, **also) -> tuple[list[int], list[int]]:
    """Every id a cursor walk of the list visits, forward to the end, then back from the last page to the first."""
    forward, pages = [], [runs_page(session, name_contains=needle, order=order, archived=archived, limit=limit,
                                    **also)]
    while True:
        forward += [r.id for r in pages[-1].items]
        if not pages[-1].next_cursor:
            break
        pages.append(runs_page(session, name_contains=needle, order=order, archived=archived, limit=limit,
                               cursor=pages[-1].next_cursor, **also))
    back, page = [], pages[-1]
    while page.prev_cursor:
        page = runs_page(session, name_contains=needle, order=order, archived=archived, limit=limit,
                         cursor=page.prev_cursor, **also)
        back = [r.id for r in page.items] + back
    return forward, back + [r.id for r in pages[-1].items] if len(pages) > 1 else forward


# How run_gram is read: (window of a trigram's rows, most matches a count keeps for the page). At most FEW matches
# are kept by the count; 1 makes the walk find them itself; a window of 2 makes a range fall back to the name index.
WAYS = {"walk": (20_000, run_list.FEW), "walk-counts-many": (20_000, 1), "walk-falls-back": (2, run_list.FEW)}


def test_a_newest_first_name_walk_lists_what_the_name_index_finds(db_engine, monkeypatch):
    _fill(db_engine)
    with db_engine.connect() as conn:
        every = conn.execute(text("SELECT id, name, project_id, archived, created_at, status FROM run")).all()
    walks, walk_grams = [], run_list._walk_grams
    monkeypatch.setattr(run_list, "_walk_grams", lambda *a: walks.append(a[4]) or walk_grams(*a))
    checked = 0
    with session_scope(db_engine) as s:
        for needle, project, archived, order, also in itertools.product(
                NEEDLES, (None, 2), (False, True, None), ("-created_at", "created_at", "-best_accuracy", "name"),
                ({}, {"status": "failed"})):  # the name, or the run's row too
            scope_session(s, project, None)
            where = (needle, project, archived, order, also)
            monkeypatch.setattr(run_list, "walkable", lambda needle: False)  # the FTS / trigram index
            monkeypatch.setattr(run_list, "DRIVE_LIMIT", 2_000)  # few match: the index's rows, sorted
            indexed = _walk(s, needle, order, archived, 3, **also)
            monkeypatch.setattr(run_list, "walkable", walkable)  # run_gram
            monkeypatch.setattr(run_list, "DRIVE_LIMIT", 0)  # other orders: a window of their index first
            for way, (window, few) in WAYS.items():
                # Other orders find the fragment's rows through run_gram too (a drive), whatever the window: asked
                # the first way only
                if "created_at" not in order and way != "walk":
                    continue
                monkeypatch.setattr(run_list, "GRAM_WINDOW", window)
                monkeypatch.setattr(run_list, "FEW", few)
                walked = _walk(s, needle, order, archived, 3, **also)
                assert walked == indexed, (way, *where)
                assert walked[0] == walked[1], (way, *where)  # back again, page by page
            if "created_at" not in order:  # the other orders: a window of their index, or a drive
                continue
            want = sorted((r for r in every if needle.lower() in r.name.lower()  # any-case "contains"
                           and (project is None or r.project_id == project) and archived in (None, bool(r.archived))
                           and also.get("status", r.status) == r.status),
                          key=lambda r: (r.created_at, r.id), reverse=order.startswith("-"))
            assert indexed[0] == [r.id for r in want], where
            checked += bool(indexed[0])
    assert checked > 60  # most of the walks found runs
    assert len(walks) > 900  # through run_gram


@pytest.mark.parametrize("by", [{"tag": "keep"}, {"name_contains": "run"}], ids=["tag", "name"])
def test_a_cursor_walk_through_runs_without_accuracy_sees_each_once(db_engine, by):
    # The filter's runs found through its index (id IN ...) and paged by id where no accuracy orders them: SQLite
    # 3.40 once dropped the page's bound there, and every next page was the first again.
    with session_scope(db_engine) as s:
        ids = [create_run(s, {"name": f"run-{i}", "dataset": "pets"}).id for i in range(8)]
        for run_id in ids:
            update_run(s, run_id, {"tags": ["keep"]})
    with session_scope(db_engine) as s:
        seen, cursor = [], None
        for _ in range(len(ids)):
            page = runs_page(s, order="-best_accuracy", limit=3, cursor=cursor, **by)
            seen += [r.id for r in page.items]
            if not (cursor := page.next_cursor):
                break
        assert seen == sorted(ids, reverse=True)
