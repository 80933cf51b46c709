"""Every list the runs API and the runs page offer is read through an index: each order x filter x archived choice
runs on a small database and every statement it sends goes through EXPLAIN. SQLite: no full SCAN of run or run_tag,
and a temporary sort only over the rows a filter's index found (the few-match path). PostgreSQL: no Seq Scan on run
or run_tag with seq scans priced out (the small table would otherwise make one cheapest). The options come from the
API's and the page's own declarations, so a new order or filter is checked the day it is offered."""
from __future__ import annotations

import inspect as pyinspect
import itertools
import re
import typing

import pytest
from sqlalchemy import event, text, update

from fitboard.app.api import runs as api_runs
from fitboard.app.core.status import STATUSES
from fitboard.app.pages import runs as page_runs
from fitboard.app.services.runs import ARCHIVED
from fitboard.app.store import run_list
from fitboard.app.store.db import session_scope
from fitboard.app.store.models import Project, Run, Search, Sweep
from fitboard.app.store.ownership import scope_session
from fitboard.app.store.runs import create_run, runs_page, update_run
from tests.store_fixtures import *  # noqa: F401,F403

FILTER_PARAMS = {"status", "dataset", "name", "tag", "sweep", "search"}  # the API's filters, checked below


def _orders() -> list[str]:
    """Every order the API's Order type allows and every column the runs page sorts by, both directions."""
    api = set(typing.get_args(api_runs.Order))
    page = {o for c in page_runs.SORTABLE for o in (c, f"-{c}")}
    return sorted(api | page)


def _filters() -> list[dict]:
    """One store filter per API filter (status once and twice; name long enough for the name index and shorter)."""
    return [{}, {"status": "failed"}, {"status": ["failed", "running"]}, {"dataset": "pets"}, {"tag": "keep"},
            {"name_contains": "run-1"}, {"name_contains": "1"}, {"sweep_id": 1}, {"search_id": 1},
            {"status": "succeeded", "tag": "keep", "dataset": "pets"}]


def test_the_checked_options_are_the_apis():
    params = set(pyinspect.signature(api_runs.get_runs).parameters)
    assert FILTER_PARAMS <= params, "a filter the API offers is missing from this test's list"
    offered = params - {"session", "settings", "order", "limit", "offset", "cursor", "detail", "archived"}
    assert offered == FILTER_PARAMS, f"the API offers filters this test does not check: {offered - FILTER_PARAMS}"
    assert set(typing.get_args(typing.get_type_hints(api_runs.get_runs)["archived"])) == set(ARCHIVED)
    assert {o.lstrip("-") for o in _orders()} <= set(run_list.ORDERS)


def _fill(engine) -> None:
    """Forty runs of every status, two datasets, tags, a sweep, a search, archived ones and accuracies; every fifth
    in a second project."""
    with session_scope(engine) as s:
        s.add(Project(id=2, name="other"))
        s.add(Sweep(id=1, name="sw", base={}, vary={}, mode="grid", seeds=[0], variants=[]))
        s.add(Search(id=1, name="se", base={}, space={}, options={}, study_name="plan-test"))
        s.flush()
        for i in range(40):
            run = create_run(s, {"name": f"run-{i}", "dataset": "pets" if i % 2 else "digits"})
            acc = None if i % 3 == 0 else i / 40
            s.exec(update(Run).where(Run.id == run.id).values(
                status=STATUSES[i % len(STATUSES)], best_accuracy=acc, tta_accuracy=acc, archived=i % 7 == 0,
                sweep_id=1 if i % 5 == 0 else None, search_id=1 if i % 4 == 0 else None,
                project_id=2 if i % 5 == 1 else 1))
            if i % 3 == 1:
                update_run(s, run.id, {"tags": ["keep", "x"]})


def _problems(conn, statement: str, params, postgres: bool) -> list[str]:
    """What is wrong with one statement's plan (nothing when every run and run_tag read uses an index, a window of
    the order's index is walked in order, and only a drive's few rows are sorted)."""
    flat = " ".join(statement.split())
    walk = " AS walk " in flat  # a window of the order's index, each row tested (run_list._scan)
    grams = " AS grams " in flat  # a trigram's run_gram rows in created_at order, each run tested (_walk_grams)
    if postgres:
        # A window must be walkable in its order's index: with sorts priced out (a 40-row table is cheapest to sort),
        # the plan walks an index whose order is the window's, or still sorts.
        conn.exec_driver_sql(f"SET enable_sort = {'off' if walk or grams else 'on'}")
        plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + statement, params))
        bad = [f"Seq Scan in:\n{plan}"] if re.search(r"Seq Scan on (run|run_tag|run_gram)\b", plan) else []
        if grams and (re.search(r"\bSort\b", plan) or "using pk_run_gram on run_gram" not in plan):
            bad.append(f"a trigram's rows not walked in their key's order:\n{plan}")
        if walk and (re.search(r"\bSort\b", plan) or not re.search(r"Index (Only )?Scan (Backward )?using "
                                                                     r"ix_run_list_\w+ on run", plan)):
            bad.append(f"a window not walked in its order's index:\n{plan}")
        return bad
    lines = [r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)]
    bad = [ln for ln in lines if re.fullmatch(r"SCAN (run|run_tag|run_gram)( AS \w+)?", ln)]
    drive = any(ln.startswith("MATERIALIZE matches") for ln in lines)  # the filter's rows, found by its index
    if any("TEMP B-TREE FOR ORDER BY" in ln for ln in lines) and not drive:
        bad.append("sorted in a temporary B-tree without a filter's index finding the rows")
    if walk and not ("CO-ROUTINE walk" in lines and any(re.match(r"SEARCH run USING (COVERING )?INDEX ix_run_list_",
                                                                 ln) for ln in lines)):
        bad.append("a window not walked in its order's index (as a co-routine: the outer LIMIT stops the walk)")
    if grams and not ("CO-ROUTINE grams" in lines and any(ln.startswith("SEARCH run_gram USING PRIMARY KEY")
                                                         for ln in lines)):
        bad.append("a trigram's rows not walked in their key's order (as a co-routine)")
    return [f"{b}\n  plan: {lines}" for b in bad]


@pytest.mark.parametrize("drive_limit", [run_list.DRIVE_LIMIT, 0], ids=["few-match", "many-match"])
def test_every_list_query_uses_an_index(db_engine, drive_limit, monkeypatch):
    # drive_limit 0 makes every filter look common, so the walk-the-order path is planned too, and windows of 3 rows
    # make the walk fall back to finding the filter's rows.
    monkeypatch.setattr(run_list, "DRIVE_LIMIT", drive_limit)
    if not drive_limit:
        monkeypatch.setattr(run_list, "SCAN_WINDOW", 3)
        monkeypatch.setattr(run_list, "NAME_WINDOW", 3)
        monkeypatch.setattr(run_list, "GRAM_WINDOW", 3)
    _fill(db_engine)
    postgres = db_engine.dialect.name == "postgresql"
    statements: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            statements.append((statement, params))

    failures, pages = [], 0
    with db_engine.connect() as conn:
        if postgres:
            conn.exec_driver_sql("SET enable_seqscan = off")  # a 40-row table is cheapest to scan; ask for indexes
        event.listen(db_engine, "before_cursor_execute", capture)
        try:
            from sqlmodel import Session
            with Session(bind=conn) as s:
                for order, f, archived, project in itertools.product(_orders(), _filters(), ARCHIVED.values(),
                                                                     (None, 2)):
                    scope_session(s, project, None)  # a request's session (?project=other), or every project
                    page = runs_page(s, order=order, archived=archived, limit=5, **f)
                    pages += bool(page.items)
                    if page.next_cursor:
                        runs_page(s, order=order, archived=archived, limit=5, cursor=page.next_cursor, **f)
        finally:
            event.remove(db_engine, "before_cursor_execute", capture)
        for statement, params in dict.fromkeys((st, tuple(p) if isinstance(p, (list, tuple)) else
                                                tuple(sorted(p.items()))) for st, p in statements):
            plist = dict(params) if postgres else tuple(params)
            failures += [f"{statement}\n  {problem}" for problem in _problems(conn, statement, plist, postgres)]
        conn.rollback()
    assert pages > 200  # the queries found runs: the plans checked are the ones that answer
    kinds = ["WITH matches AS MATERIALIZED", *(["FROM run_tag WHERE"] if drive_limit else [" AS walk ", " AS grams "])]
    assert all(any(k in " ".join(st.split()) for st, _ in statements) for k in kinds), "a way went unchecked"
    assert not failures, f"{len(failures)} list queries read without an index, e.g.:\n" + "\n\n".join(failures[:3])


def test_more_than_count_limit_is_reported_as_unknown(db_engine, monkeypatch):
    monkeypatch.setattr(run_list, "COUNT_LIMIT", 10)
    _fill(db_engine)
    with session_scope(db_engine) as s:
        page = runs_page(s, limit=3, archived=None)
        assert page.total is None and len(page.items) == 3  # 40 runs: "more than 10"
        assert runs_page(s, sweep_id=1, archived=None).total == 8  # few: counted exactly


def test_a_cursor_walk_sees_every_run_once_in_order_and_back(db_engine):
    _fill(db_engine)
    with session_scope(db_engine) as s:
        for order in ("-best_accuracy", "name", "-created_at", "status"):
            whole = [r.id for r in runs_page(s, order=order, archived=None, limit=100).items]
            seen, page = [], runs_page(s, order=order, archived=None, limit=7)
            pages = [page]
            while True:
                seen += [r.id for r in page.items]
                if not page.next_cursor:
                    break
                page = runs_page(s, order=order, archived=None, limit=7, cursor=page.next_cursor)
                pages.append(page)
            assert seen == whole and len(seen) == 40, order
            back = runs_page(s, order=order, archived=None, limit=7, cursor=pages[-1].prev_cursor)
            assert [r.id for r in back.items] == [r.id for r in pages[-2].items], order
        with pytest.raises(run_list.BadCursor):
            runs_page(s, order="name", cursor=runs_page(s, order="-name", limit=2).next_cursor)
    with db_engine.connect() as conn:  # the plans above ran on real data: the tags moved to their own table too
        assert conn.execute(text("SELECT count(*) FROM run_tag WHERE tag = 'keep'")).scalar() == 13


def test_a_project_lists_its_own_runs_with_its_own_tags(db_engine):
    _fill(db_engine)
    with session_scope(db_engine) as s:
        scope_session(s, 2, None)
        mine = runs_page(s, archived=None, limit=100).items
        assert sorted(int(r.name.split("-")[1]) for r in mine) == [1, 6, 11, 16, 21, 26, 31, 36]
        tagged = runs_page(s, archived=None, tag="keep", limit=100).items
        assert [r.name for r in tagged] == ["run-31", "run-16", "run-1"]
        assert runs_page(s, archived=None, tag="keep").total == 3
        scope_session(s, None, None)
        every = runs_page(s, archived=None, order="-best_accuracy", limit=100).items
        assert len(every) == 40 and runs_page(s, archived=None, tag="keep").total == 13
        accs = [r.best_accuracy for r in every]  # both projects' runs merged in one order, no accuracy last
        assert accs[:26] == sorted(accs[:26], reverse=True) and accs[26:] == [None] * 14
    with db_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM run_tag WHERE project_id = 2")).scalar() == 6


def test_archiving_a_run_moves_its_tags_with_it(db_engine):
    _fill(db_engine)
    with session_scope(db_engine) as s:
        run = runs_page(s, tag="keep", archived=False, limit=1).items[0]
        update_run(s, run.id, {"archived": True})
        assert run.id not in [r.id for r in runs_page(s, tag="keep", archived=False, limit=100).items]
        assert run.id in [r.id for r in runs_page(s, tag="keep", archived=True, limit=100).items]
        update_run(s, run.id, {"archived": False, "tags": ["keep", "new"]})
        assert [r.id for r in runs_page(s, tag="new", archived=False).items] == [run.id]
        assert runs_page(s, tag="new", archived=True).total == 0
    with db_engine.connect() as conn:  # the copy of the flag the tag index orders by
        assert conn.execute(text("SELECT count(*) FROM run_tag r JOIN run ON run.id = r.run_id "
                                 "WHERE r.archived <> run.archived")).scalar() == 0
