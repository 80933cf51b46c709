"""The runs list at any size: filters, orders and keyset pages, each read through an index (models.LIST_INDEXES).

A page is found in two steps: the key columns of the page's rows (read from the order's index alone where no filter
needs the row), then those rows by id. A cursor is the key of a row, so the next page starts where the last ended
in the index, as fast 40 pages deep as on the first. Counts stop at COUNT_LIMIT: past it a list says "more than".

Runs without a value for the order's column (no accuracy yet) come after all others in either direction, as a
second index range (value IS NULL) walked by id.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, replace
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from fitboard.app.store.models import LIST_INDEXES, Project, Run, RunTag, UTCDateTime
from fitboard.app.store.name_search import (
    FTS_TABLE,
    GRAM_TABLE,
    fts_phrase,
    indexable,
    rarest_gram,
    walkable,
)

COUNT_LIMIT = 10_000  # a count stops here; beyond it the list is "more than 10,000"
MAX_OFFSET = 10_000  # deeper pages are reached by cursor
MAX_CURSOR = 1_000  # characters; a cursor is a few dozen
DRIVE_LIMIT = 2_000  # this few matches are found through the filter and sorted; more, by walking the order
SCAN_WINDOW = 20_000  # index entries a walk tests before it finds the filter's rows and sorts them instead
NAME_WINDOW = 4_000  # the same for a name fragment (its test reads each run's row, not the index alone)
GRAM_WINDOW = 20_000  # run_gram rows a newest-first name walk reads before it sorts the fragment's matches instead
# order -> the key: the order's column, then the tie-breakers its index ends with
ORDERS: dict[str, tuple[str, ...]] = {
    "id": ("id",), "created_at": ("created_at", "id"), "name": ("name", "id"), "finished_at": ("finished_at", "id"),
    "best_accuracy": ("best_accuracy", "id"), "tta_accuracy": ("tta_accuracy", "id"),
    "status": ("status", "created_at", "id"), "dataset": ("dataset", "created_at", "id")}
assert {f"ix_run_list_{order}" for order in ORDERS} <= set(LIST_INDEXES)  # every order has its index
NULLABLE = {"finished_at", "best_accuracy", "tta_accuracy"}
_fts = sa.table(FTS_TABLE, sa.column("rowid"))
_gram = sa.table(GRAM_TABLE, sa.column("gram"), sa.column("project_id"), sa.column("archived"),
                 sa.column("created_at", UTCDateTime()), sa.column("run_id", sa.Integer()), sa.column("name"))


@dataclass(frozen=True)
class RunFilter:
    """What a list asks for; archived None lists archived and other runs alike."""

    status: tuple[str, ...] = ()
    dataset: str | None = None
    name_contains: str | None = None
    tag: str | None = None
    archived: bool | None = False
    sweep_id: int | None = None
    search_id: int | None = None
    projects: tuple[int, ...] = ()  # the project whose runs these are (every project: page_runs lists them all)
    # name_contains's rarest trigram and name_contains lower-cased (a walked fragment is ASCII): the trigram's
    # run_gram rows find the matches, each tested on the lowered name it carries (page_runs sets them)
    name_gram: str | None = None
    name_lowered: str | None = None

    def narrows(self) -> bool:
        """Whether anything beyond archived filters the runs."""
        return bool(self.status or self.dataset is not None or self.name_contains or self.tag
                    or self.sweep_id is not None or self.search_id is not None)


@dataclass
class RunsPage:
    """A page of runs; total is exact up to COUNT_LIMIT and None past it; the cursors lead to the pages around."""

    items: list[Run]
    total: int | None
    next_cursor: str | None
    prev_cursor: str | None


class BadCursor(ValueError):
    """A cursor this list did not hand out (or one made for another order)."""


# --- cursors -----------------------------------------------------------------------------------------------------


def encode_cursor(order: str, forward: bool, position: tuple) -> str:
    """A cursor: the order, the direction (after / before) and the row's position (phase, key values)."""
    values = [v.isoformat() if isinstance(v, datetime) else v for v in position[1:]]
    raw = json.dumps([order, "a" if forward else "b", position[0], *values], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _typed(column: str, value):
    """A cursor's key value as the column's type; BadCursor when it is not one."""
    if value is None and column in NULLABLE:
        return None
    kind = {"id": int, "best_accuracy": float, "tta_accuracy": float}.get(column, str)
    if column in ("created_at", "finished_at"):
        return datetime.fromisoformat(value)  # a str that is not a date: ValueError, caught by the caller
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BadCursor(column)
    return value


def decode_cursor(cursor: str, order: str) -> tuple[bool, tuple]:
    """(forward, position) from a cursor made for this order; BadCursor otherwise."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        made_for, way, phase, *values = raw
        cols = ORDERS[order.lstrip("-")]
        if made_for != order or way not in ("a", "b") or phase not in (0, 1) or len(values) != len(cols):
            raise BadCursor(order)
        position = (phase, *(_typed(c, v) for c, v in zip(cols, values)))
        if (position[1] is None) != (phase == 1):
            raise BadCursor(order)
        return way == "a", position
    except (ValueError, TypeError, KeyError) as exc:
        raise BadCursor(f"not a cursor of this list (order {order}); start again without it") from exc


# --- filters -----------------------------------------------------------------------------------------------------


def _variants(f: RunFilter) -> list[tuple]:
    """One WHERE per index range (project, archived, status): several projects (an unscoped session), archived None
    and several statuses become one range each (merged afterwards)."""
    archived = [False, True] if f.archived is None else [f.archived]
    statuses = list(f.status) or [None]
    return [(p, a, s) for p in f.projects for a in archived for s in statuses]


def _read(session: Session, stmt):
    """Run one of the list's key queries (counts, walks: keys and ids, never rows) on the session's connection.

    Each names its range's project itself (a range is a project of f.projects, the session's own when it is scoped),
    so it skips the ORM: the scoped session's `project_id = :p` on five tables, re-keyed on every query, cost a
    tenth of a list request. The rows found are loaded through the ORM (_load), under that check again."""
    if session.new or session.dirty or session.deleted:
        session.flush()  # what the ORM's autoflush would have done
    return session.connection().execute(stmt)


def _pattern(needle: str) -> str:
    """A LIKE pattern for "contains needle", its wildcards escaped (escape character: backslash)."""
    return "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _gram_rows(f: RunFilter, project: int, archived: bool) -> list:
    """SQL: one range's run_gram rows of the fragment's rarest trigram."""
    return [_gram.c.gram == f.name_gram, _gram.c.project_id == project, _gram.c.archived == archived]


def _holds(lowered_name, lowered: str):
    """SQL: an already lowered name contains an already lowered fragment (a plain LIKE: no case to fold)."""
    return lowered_name.like(_pattern(lowered), escape="\\")


def _name_match(dialect: str, needle: str, through_index: bool, name=Run.name):
    """SQL: the run's name (or the name column given) contains needle, any case; through the name index where it can
    narrow the search (PostgreSQL's planner finds its trigram index for the ILIKE itself)."""
    if dialect == "postgresql":
        return name.ilike(_pattern(needle), escape="\\")
    if through_index and indexable(needle):
        return Run.id.in_(sa.select(_fts.c.rowid).where(sa.text(f"{FTS_TABLE} MATCH :phrase").bindparams(
            phrase=fts_phrase(needle))))
    return name.icontains(needle, autoescape=True)


def _tagged(f: RunFilter, variant: tuple):
    """SQL: the ids of the range's runs with the filter's tag (run_tag carries its run's project and archived flag)."""
    project, archived, _ = variant
    return sa.select(RunTag.run_id).where(RunTag.project_id == project, RunTag.archived == archived,
                                          RunTag.tag == f.tag)


def _where(f: RunFilter, variant: tuple, dialect: str) -> list:
    """The WHERE of one range finding the filter's rows through the filter's own indexes (few match)."""
    project, archived, status = variant
    # "= false", not "IS false": PostgreSQL's B-tree takes only the first
    where = [Run.project_id == project, Run.archived == archived]
    if status is not None:
        where.append(Run.status == status)
    if f.dataset is not None:
        where.append(Run.dataset == f.dataset)
    if f.sweep_id is not None:
        where.append(Run.sweep_id == f.sweep_id)
    if f.search_id is not None:
        where.append(Run.search_id == f.search_id)
    if f.tag:
        where.append(Run.id.in_(_tagged(f, variant)))
    if f.name_gram:  # the range's run_gram rows of the rarest trigram whose name holds the fragment (index only)
        where.append(Run.id.in_(sa.select(_gram.c.run_id).where(
            *_gram_rows(f, project, archived), _holds(_gram.c.name, f.name_lowered))))
    elif f.name_contains:
        where.append(_name_match(dialect, f.name_contains, True))
    return where


def _count(session: Session, f: RunFilter, variant: tuple, cap: int) -> int:
    """How many runs of one range match, counting no further than cap."""
    dialect = session.get_bind().dialect.name
    if f.name_gram:
        counted = _count_grams(session, f, variant, cap)
        if counted is not None:
            return counted
        f = replace(f, name_gram=None)  # the range holds more of the trigram than a window: the name index's way
    inner = sa.select(sa.literal(1))
    if f.tag and not (f.status or f.dataset is not None or f.name_contains or f.sweep_id is not None
                      or f.search_id is not None):
        inner = _tagged(f, variant)  # run_tag's index alone: a run's tags carry its project and archived flag
        return _read(session, sa.select(sa.func.count()).select_from(inner.limit(cap).subquery())).scalar_one()
    if f.tag:
        # Stream the tag's rows and stop at cap: an IN list would first gather every run with the tag.
        inner = inner.select_from(RunTag).join(Run, Run.id == RunTag.run_id).where(
            RunTag.project_id == variant[0], RunTag.archived == variant[1], RunTag.tag == f.tag)
        f = replace(f, tag=None)
    elif dialect == "sqlite" and indexable(f.name_contains):
        inner = inner.select_from(_fts).join(Run, Run.id == _fts.c.rowid).where(
            sa.text(f"{FTS_TABLE} MATCH :phrase").bindparams(phrase=fts_phrase(f.name_contains)))
        f = replace(f, name_contains=None)
    inner = inner.where(*_where(f, variant, dialect)).limit(cap)
    return _read(session, sa.select(sa.func.count()).select_from(inner.subquery())).scalar_one()


def _gram_window(dialect: str, f: RunFilter, variant: tuple, descending: bool = True,
                 start: tuple | None = None):
    """The next GRAM_WINDOW run_gram rows of the fragment's rarest trigram in one range, in created_at order from
    start (excluded), each with the columns the filter tests (the run's, found by id, where more than the name is
    asked): (the rows' SELECT, the window as a subquery)."""
    where = _gram_rows(f, variant[0], variant[1])
    order = [_gram.c.created_at, _gram.c.run_id]
    if start is not None:  # created_at is never NULL: one phase
        bound = sa.tuple_(sa.bindparam(None, start[1], type_=UTCDateTime()), sa.bindparam(None, start[2]))
        where.append(sa.tuple_(*order) < bound if descending else sa.tuple_(*order) > bound)
    ranged = sa.select(*order).where(*where).order_by(*_ordered(order, descending)).limit(GRAM_WINDOW)
    if not (variant[2] is not None or f.dataset is not None or f.sweep_id is not None or f.search_id is not None
            or f.tag):  # the name alone: tested on the (lowered) name each row carries, read from the key's index
        return ranged, ranged.add_columns(_gram.c.run_id.label("id"), _gram.c.name.label("lname")).subquery("grams")
    tested = (Run.id, Run.status, Run.dataset, Run.sweep_id, Run.search_id, Run.name)
    if dialect == "postgresql":
        # Each row's run found by id as the walk meets it: a LATERAL look-up (its LIMIT keeps the planner from
        # turning it into a join), since a hash join of the whole window with every run looked cheaper to it.
        postings = ranged.subquery("postings")
        run = sa.select(*tested).where(Run.id == postings.c.run_id).limit(1).lateral("r")
        window = sa.select(postings.c.created_at, postings.c.run_id, *[run.c[c.key] for c in tested]).select_from(
            postings.join(run, sa.true())).subquery("grams")
        return ranged, window
    # SQLite: each row's run joined by id inside the window, which is then a co-routine read in its order (a join
    # outside it would make SQLite fill it first), so an outer LIMIT stops the walk.
    window = ranged.add_columns(*tested).join(Run, Run.id == _gram.c.run_id).subquery("grams")
    return ranged, window


def _window_full(session: Session, ranged) -> bool:
    """Whether a window read all GRAM_WINDOW rows it may (so more may lie beyond it); read from the key alone."""
    return _read(session, sa.select(sa.func.count()).select_from(
        ranged.with_only_columns(sa.literal(1)).subquery())).scalar_one() >= GRAM_WINDOW


FEW = 100  # a range whose run_gram window holds at most this many matches keeps their keys for its page
_FOUND = "fitboard.run_list.grams"  # session.info: (filter, range) -> the keys of every match, newest first


def _count_grams(session: Session, f: RunFilter, variant: tuple, cap: int) -> int | None:
    """How many runs of one range match a filter with a name fragment, counting no further than cap, from the
    range's rows of the fragment's rarest trigram (a small range, such as the archived runs, has few); None when
    GRAM_WINDOW of them held fewer than cap matches and more were left (the caller counts the other way). At most
    FEW matches in all: their keys are kept for the page (_walk_grams), which then reads nothing again."""
    dialect = session.get_bind().dialect.name
    ranged, window = _gram_window(dialect, f, variant)
    tests = _tests(f, variant, window, dialect)
    few = _read(session, sa.select(window.c.created_at, window.c.id).where(*tests).limit(FEW + 1)).all()
    if len(few) <= FEW:
        if _window_full(session, ranged):
            return None if len(few) < cap else cap
        session.info.setdefault(_FOUND, {})[(f, variant)] = [tuple(r) for r in few]
        return min(len(few), cap)
    matched = sa.select(sa.literal(1)).select_from(window).where(*tests).limit(cap)
    counted = _read(session, sa.select(sa.func.count()).select_from(matched.subquery())).scalar_one()
    return None if counted < cap and _window_full(session, ranged) else counted


def _counts_together(session: Session, f: RunFilter, variants: list[tuple], cap: int) -> tuple[list[int], bool]:
    """Each range's count from one query, counting no further than cap in all, and whether that was every match: a
    name search reads its index once, not once a range (a trigram scan costs 8-13 ms at 1M runs on PostgreSQL)."""
    dialect = session.get_bind().dialect.name
    inner = sa.select(Run.project_id, Run.archived, Run.status)
    if dialect == "sqlite":
        inner = inner.select_from(_fts).join(Run, Run.id == _fts.c.rowid).where(
            sa.text(f"{FTS_TABLE} MATCH :phrase").bindparams(phrase=fts_phrase(f.name_contains)))
        f = replace(f, name_contains=None)
    found = inner.where(sa.or_(*[sa.and_(*_where(f, v, dialect)) for v in variants])).limit(cap).subquery()
    rows = _read(session, sa.select(found.c.project_id, found.c.archived, found.c.status, sa.func.count()).group_by(
        found.c.project_id, found.c.archived, found.c.status)).all()
    per = [sum(n for project, archived, status, n in rows
               if project == v[0] and bool(archived) == v[1] and v[2] in (None, status)) for v in variants]
    return per, sum(r[3] for r in rows) < cap


def count_runs(session: Session, f: RunFilter, order: str | None = None) -> tuple[int | None, list[int]]:
    """How many runs match when at most COUNT_LIMIT do (None when more), and each range's count: capped so that
    together they stop just past COUNT_LIMIT, but never below DRIVE_LIMIT + 1 (which says how to find its rows), or
    1 where a range is walked through run_gram whatever its count (a name fragment, created_at order)."""
    variants = _variants(f)
    floor = 1 if f.name_gram and order is not None and order.lstrip("-") == "created_at" else DRIVE_LIMIT + 1
    # run_gram is keyed by range: each range counts its own rows (a small range reads few)
    if indexable(f.name_contains) and not f.name_gram and not f.tag and len(variants) > 1:
        per, every = _counts_together(session, f, variants, COUNT_LIMIT + 1)
        if every:
            return sum(per), per
        # More than COUNT_LIMIT in all: a range that met over DRIVE_LIMIT of them is walked; the others are counted
        # on their own, as far as DRIVE_LIMIT + 1 (which says how to find their rows)
        per = [n if n > DRIVE_LIMIT else _count(session, f, v, DRIVE_LIMIT + 1) for v, n in zip(variants, per)]
        return None, per
    per: list[int] = []
    for variant in variants:
        per.append(_count(session, f, variant, max(COUNT_LIMIT + 1 - sum(per), floor)))
    return (None if sum(per) > COUNT_LIMIT else sum(per)), per


# --- walking an order --------------------------------------------------------------------------------------------


SERVED_WITH = {"status": ("created_at", "status", "best_accuracy", "tta_accuracy"),
               "dataset": ("created_at", "dataset")}  # a filter -> the orders whose index it leads


def _served(f: RunFilter, order: str) -> bool:
    """Whether the order's index alone finds the filter's rows (its leading columns are the filter's equalities)."""
    used = {"status": bool(f.status), "dataset": f.dataset is not None, "name": bool(f.name_contains),
            "tag": bool(f.tag), "sweep": f.sweep_id is not None, "search": f.search_id is not None}
    on = [k for k, v in used.items() if v]
    return not on or (len(on) == 1 and order in SERVED_WITH.get(on[0], ()))


def _arm(keys: list, phase: int, descending: bool, start: tuple | None, id_unindexed: bool = False) -> tuple:
    """The phase's WHERE (value present or absent, past start) and its ordering columns for key columns keys, with
    the direction and start they were made for. id_unindexed: the NULL phase's bound on id is a plain test, never an
    index's range (SQLite 3.40 drops `id < ?` when `id IN (...)` also constrains an index ending with id, and a
    cursor's next page was the same page again)."""
    cols = keys if phase == 0 else keys[1:]
    where = [keys[0].is_(None) if phase == 1 else keys[0].is_not(None)] if keys[0].key in NULLABLE else []
    if start is not None and start[0] == phase:
        values = start[1:] if phase == 0 else start[2:]
        bound = sa.tuple_(*[sa.bindparam(None, v, type_=c.type) for c, v in zip(cols, values)])
        bounded = sa.tuple_(*[c + 0 for c in cols]) if phase == 1 and id_unindexed else sa.tuple_(*cols)
        where.append(bounded < bound if descending else bounded > bound)
    return where, cols, descending, start


def _ordered(cols: list, descending: bool) -> list:
    """ORDER BY terms for cols in one direction."""
    return [c.desc() if descending else c.asc() for c in cols]


def _walk(session: Session, f: RunFilter, order: str, forward: bool, start: tuple | None, n: int,
          counts: list[int], skip: int = 0) -> list[tuple]:
    """Up to n positions (phase, key values...) from start (excluded) in the list's order, or against it; skip: rows
    the database passes over first (one range of one phase, read through its index alone: see _sql_offset)."""
    field = order.lstrip("-")
    keys = [getattr(Run, c) for c in ORDERS[field]]
    descending = order.startswith("-") == forward
    phases = [0, 1] if field in NULLABLE else [0]
    phases = phases if forward else phases[::-1]
    if start is not None:
        phases = phases[phases.index(start[0]):]
    found: list[tuple] = []
    for variant, count in zip(_variants(f), counts):
        got: list[tuple] = []
        strategy = _strategy(f, field, count)
        for phase in phases:
            if len(got) < n and strategy != "none":
                got += _range(session, f, variant, strategy, _arm(keys, phase, descending, start), keys,
                              n - len(got), phase, skip)
        found += got
    return _merge(found, descending, forward, n) if len(counts) > 1 else found


def _range(session: Session, f: RunFilter, variant: tuple, strategy: str, arm: tuple, keys: list, n: int,
           phase: int, skip: int = 0) -> list[tuple]:
    """Up to n positions of one range and phase, found the strategy's way (see _strategy)."""
    where, cols, descending = arm[:3]
    if strategy in ("scan", "grams"):
        got = (_scan if strategy == "scan" else _walk_grams)(session, f, variant, arm, keys, n)
        if got is not None:
            return [(phase, *r) for r in got]
        strategy = "drive"  # the window held too few matches: the filter's rows after all
    if strategy == "drive":
        return _drive(session, f, variant, keys, n, phase, arm)
    stmt = sa.select(*keys).where(Run.project_id == variant[0], Run.archived == variant[1], *where)
    if variant[2] is not None:
        stmt = stmt.where(Run.status == variant[2])
    if f.dataset is not None:
        stmt = stmt.where(Run.dataset == f.dataset)
    stmt = stmt.order_by(*_ordered(cols, descending)).limit(n).offset(skip or None)
    return [(phase, *r) for r in _read(session, stmt).all()]


def _drive(session: Session, f: RunFilter, variant: tuple, keys: list, n: int, phase: int,
           arm: tuple) -> list[tuple]:
    """The filter's rows found through the filter's own index (the tag's, the name index's, the sweep's...), then the
    best n sorted by the database. A MATERIALIZED CTE: the planner may not fold it into a walk of the order's index,
    which it prices as if matches were spread evenly through it (a filter whose matches are all old would walk every
    newer run)."""
    dialect = session.get_bind().dialect.name
    where, cols, descending = _arm(keys, phase, arm[2], arm[3], id_unindexed=dialect == "sqlite")[:3]
    found = sa.select(*keys).where(*_where(f, variant, dialect), *where).cte("matches").prefix_with("MATERIALIZED")
    stmt = sa.select(*[found.c[k.key] for k in keys]).order_by(
        *_ordered([found.c[c.key] for c in cols], descending))
    return [(phase, *r) for r in _read(session, stmt.limit(n)).all()]


def _tests(f: RunFilter, variant: tuple, window, dialect: str) -> list:
    """The filter as tests of each row of a window of the order's index (the window's columns)."""
    tests = []
    if variant[2] is not None:
        tests.append(window.c.status == variant[2])
    if f.dataset is not None:
        tests.append(window.c.dataset == f.dataset)
    if f.sweep_id is not None:
        tests.append(window.c.sweep_id == f.sweep_id)
    if f.search_id is not None:
        tests.append(window.c.search_id == f.search_id)
    if "lname" in window.c:  # a window of run_gram rows alone: the name each carries, lowered
        tests.append(_holds(window.c.lname, f.name_lowered))
    elif f.name_contains:
        tests.append(_name_match(dialect, f.name_contains, False, window.c.name))
    if f.tag:
        tests.append(sa.exists().where(RunTag.run_id == window.c.id, RunTag.tag == f.tag))
    return tests


def _scan(session: Session, f: RunFilter, variant: tuple, arm: tuple, keys: list, n: int) -> list[tuple] | None:
    """The first n matches among the next SCAN_WINDOW rows of the order's index (NAME_WINDOW for a name fragment),
    each tested in SQL as the walk meets it (the walk stops at the n-th match); None when the window held fewer than
    n and more rows were left (the caller then finds the filter's rows instead)."""
    where, cols, descending = arm[:3]
    dialect = session.get_bind().dialect.name
    columns = [c for c, on in ((Run.status, variant[2] is not None), (Run.dataset, f.dataset is not None),
                               (Run.sweep_id, f.sweep_id is not None), (Run.search_id, f.search_id is not None),
                               (Run.name, bool(f.name_contains))) if on]
    ranged = sa.select(*keys).where(Run.project_id == variant[0], Run.archived == variant[1], *where).order_by(
        *_ordered(cols, descending)).limit(size := NAME_WINDOW if f.name_contains else SCAN_WINDOW)
    window = ranged.add_columns(*columns).subquery("walk")
    # The window's rows come out of its subquery in its order (SQLite: a co-routine; PostgreSQL: the subquery's
    # sort order, so the outer ORDER BY costs nothing), and the outer LIMIT stops the walk at the n-th match.
    stmt = sa.select(*[window.c[k.key] for k in keys]).where(*_tests(f, variant, window, dialect)).limit(n)
    if dialect == "postgresql":
        stmt = stmt.order_by(*_ordered([window.c[c.key] for c in cols], descending))
    got = [tuple(r) for r in _read(session, stmt).all()]
    if len(got) < n and _read(session, sa.select(sa.func.count()).select_from(
            ranged.with_only_columns(sa.literal(1)).subquery())).scalar_one() >= size:
        return None
    return got


def _walk_grams(session: Session, f: RunFilter, variant: tuple, arm: tuple, keys: list,
                n: int) -> list[tuple] | None:
    """The first n matches of a name fragment in created_at order: the run_gram rows of its rarest trigram walked
    in that order (at most GRAM_WINDOW), each tested as the walk meets it (on the name it carries, or on its run's
    row where another filter asks), the walk stopping at the n-th match; None when the window held fewer than n and
    more rows were left (as _scan)."""
    found = session.info.get(_FOUND, {}).get((f, variant))
    if found is not None and arm[3] is None:  # the count found every match: the first page is theirs
        return (found if arm[2] else found[::-1])[:n]
    dialect = session.get_bind().dialect.name
    ranged, window = _gram_window(dialect, f, variant, arm[2], arm[3])
    stmt = sa.select(window.c.created_at, window.c.id).where(*_tests(f, variant, window, dialect)).limit(n)
    if dialect == "postgresql":
        stmt = stmt.order_by(*_ordered([window.c.created_at, window.c.run_id], arm[2]))
    got = [tuple(r) for r in _read(session, stmt).all()]
    return None if len(got) < n and _window_full(session, ranged) else got


def _merge(found: list[tuple], descending: bool, forward: bool, n: int) -> list[tuple]:
    """Positions from several ranges in one order: by phase (values before NULLs, going forward), then key."""
    out = []
    for phase in ([0, 1] if forward else [1, 0]):
        part = [p for p in found if p[0] == phase]
        out += sorted(part, key=lambda p: tuple(v for v in p[1:] if v is not None) if phase else p[1:],
                      reverse=descending)
    return out[:n]


def _strategy(f: RunFilter, field: str, count: int) -> str:
    """How to find a range's page: not at all (none match); its order's index alone (served); a name fragment's
    run_gram rows in created_at order (grams); the filter's rows, sorted (drive: at most DRIVE_LIMIT match); or a
    window of the order's index, each row tested (scan: many match, so the window should hold a page; if it does
    not, they are all far down the order, and drive after all; likewise a grams walk that finds too few). The
    same on both databases: PostgreSQL's planner would make this choice from statistics that cannot say where in
    the order a filter's matches lie."""
    if count == 0:
        return "none"
    if _served(f, field):
        return "served"
    # Newest (or oldest) first by name fragment: its trigram's rows are in that order (a window of the order's index
    # may hold none of the matches, all far down the order, and sorting every match cost 0.1-0.7 s at 1M runs).
    if field == "created_at" and f.name_gram:
        return "grams"
    return "drive" if count <= DRIVE_LIMIT else "scan"


def _sql_offset(f: RunFilter, field: str, counts: list[int], start: tuple | None, offset: int) -> bool:
    """Whether the database can skip offset rows itself: one range (one project, archived or not, one status), an
    order whose values are never NULL (one phase), no cursor, read through the order's index alone."""
    return bool(offset) and start is None and len(counts) == 1 and field not in NULLABLE and _strategy(
        f, field, counts[0]) == "served"


# What a summary of a run never shows: its largest columns, left unread (and unparsed, three of them JSON) when the
# caller asks for summaries; reading one anyway raises instead of costing a query per run.
FULL_ONLY = (Run.spec, Run.result, Run.progress, Run.traceback)
# Built once: loader options are immutable, and building four took a few per cent of a short list's time
_SUMMARY_ONLY = tuple(sa.orm.defer(column, raiseload=True) for column in FULL_ONLY)


# Built once, the ids bound at each call: building the SELECT of every column took a sixth of the page's load.
_BY_IDS = sa.select(Run).where(Run.id.in_(sa.bindparam("ids", expanding=True)))
_SUMMARIES_BY_IDS = _BY_IDS.options(*_SUMMARY_ONLY)


def _load(session: Session, positions: list[tuple], summary: bool) -> list[Run]:
    """The runs at these positions, in their order (the id is the key's last value); summary: without FULL_ONLY."""
    ids = [p[-1] for p in positions]
    if not ids:
        return []
    query = _SUMMARIES_BY_IDS if summary else _BY_IDS
    rows = {r.id: r for r in session.exec(query, params={"ids": ids}).scalars()}
    return [rows[i] for i in ids if i in rows]


def page_runs(session: Session, f: RunFilter, order: str = "-created_at", limit: int = 50, offset: int = 0,
              cursor: str | None = None, summary: bool = False) -> RunsPage:
    """A page of runs in order: from the start, offset rows in (at most MAX_OFFSET) or at a cursor; summary: the runs
    without their recipe, result, progress and traceback (FULL_ONLY)."""
    field = order.lstrip("-")
    if field not in ORDERS:
        raise ValueError(f"cannot order runs by {field!r}; choose one of {', '.join(ORDERS)}")
    if offset > MAX_OFFSET:
        raise ValueError(f"offset is at most {MAX_OFFSET}; go further with the cursor")
    if not f.projects:
        f = replace(f, projects=tuple(session.exec(sa.select(Project.id).order_by(Project.id)).scalars()))
    if walkable(f.name_contains) and f.projects:  # ASCII: lower() in Python, SQLite and PostgreSQL alike
        needle, (project, archived, _) = f.name_contains.lower(), _variants(f)[0]
        gram = rarest_gram(session, needle, project, archived, oldest_first=order == "created_at")
        f = replace(f, name_gram=gram, name_lowered=needle)
    session.info[_FOUND] = {}  # a count that found every match of a range keeps them for this page only
    try:
        total, counts = count_runs(session, f, order)
        forward, start = decode_cursor(cursor, order) if cursor else (True, None)
        if _sql_offset(f, field, counts, start, offset):  # the index skips them: 51 rows read, not 5,051
            got = _walk(session, f, order, forward, start, limit + 1, counts, skip=offset)
        else:
            got = _walk(session, f, order, forward, start, offset + limit + 1, counts)[offset:]
        more, got = len(got) > limit, got[:limit]
        if not forward:
            got = got[::-1]
        items = _load(session, got, summary)
        if not got:
            return RunsPage(items, total, None, None)
        after = encode_cursor(order, True, got[-1]) if (more or not forward) else None
        before = encode_cursor(order, False, got[0]) if (start is not None and forward) or offset or (
            more and not forward) else None
        return RunsPage(items, total, after, before)
    finally:
        session.info.pop(_FOUND, None)
