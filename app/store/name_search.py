"""Run-name search through an index: an FTS5 trigram table on SQLite, a pg_trgm GIN index on PostgreSQL, and on both
run_gram, each run's name trigrams with its list key and its lowered name.

The FTS / trigram index answers "name contains s" (any case) for s of three characters or more without reading every
run, but not in any order. run_gram answers "the newest runs whose name contains s": walk one trigram of s through its
rows (project_id, archived, created_at, run_id) newest first, test the name each row carries (no look-up of the run
unless another filter needs it), stop at the page's last match. The trigram walked is the rarest, judged from a sample
of the runs' names (rarest_gram). Triggers keep both in step with run.name on SQLite, and run_gram on PostgreSQL; a
table rebuild in a later migration (Alembic's batch mode copies `run` and drops the old one) drops SQLite's
triggers, so db.upgrade() puts them back after every migration.
"""
from __future__ import annotations

import random
import threading
import time
from collections import Counter

import sqlalchemy as sa
from sqlalchemy import text

FTS_TABLE = "run_name_fts"  # and its shadow tables run_name_fts_*
TRGM_INDEX = "ix_run_name_trgm"
MIN_CHARS = 3  # a trigram index cannot narrow a shorter string: those searches read the list's order index instead

SQLITE_TRIGGERS = (
    f"CREATE TRIGGER IF NOT EXISTS run_name_fts_insert AFTER INSERT ON run BEGIN "
    f"INSERT INTO {FTS_TABLE}(rowid, name) VALUES (new.id, new.name); END",
    f"CREATE TRIGGER IF NOT EXISTS run_name_fts_delete AFTER DELETE ON run BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, name) VALUES ('delete', old.id, old.name); END",
    f"CREATE TRIGGER IF NOT EXISTS run_name_fts_rename AFTER UPDATE OF name ON run BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, name) VALUES ('delete', old.id, old.name); "
    f"INSERT INTO {FTS_TABLE}(rowid, name) VALUES (new.id, new.name); END",
)


GRAM_TABLE = "run_gram"
POSITIONS = "run_gram_position"  # SQLite: the numbers 1..4096 (a trigger may not use a recursive CTE)


def _grams_of(row: str) -> str:
    """SQLite: SELECT the trigrams of a run row's lower-cased name with its key (row is new or old)."""
    return (f"SELECT DISTINCT substr(lower({row}.name), p, 3), {row}.project_id, {row}.archived, {row}.created_at, "
            f"{row}.id, lower({row}.name) FROM {POSITIONS} WHERE p <= length({row}.name) - 2")


# Every column of the key compared by =, so each trigram's row is one look-up of the key (a row-value IN would use
# the gram alone: SQLite finds the subquery's affinity unlike the typed columns').
_DELETE_OLD = (f"DELETE FROM {GRAM_TABLE} WHERE run_id = old.id AND project_id = old.project_id "
               f"AND archived = old.archived AND created_at = old.created_at AND gram IN "
               f"(SELECT substr(lower(old.name), p, 3) FROM {POSITIONS} WHERE p <= length(old.name) - 2);")
_INSERT_NEW = (f"INSERT OR IGNORE INTO {GRAM_TABLE} (gram, project_id, archived, created_at, run_id, name) "
               f"{_grams_of('new')};")
_CHANGED = ("old.name IS NOT new.name OR old.project_id IS NOT new.project_id OR old.archived IS NOT new.archived "
            "OR old.created_at IS NOT new.created_at")
SQLITE_GRAM_TRIGGERS = (  # the same text as migration 0015's
    f"CREATE TRIGGER IF NOT EXISTS run_gram_insert AFTER INSERT ON run BEGIN {_INSERT_NEW} END",
    f"CREATE TRIGGER IF NOT EXISTS run_gram_delete AFTER DELETE ON run BEGIN {_DELETE_OLD} END",
    f"CREATE TRIGGER IF NOT EXISTS run_gram_update AFTER UPDATE OF name, project_id, archived, created_at ON run "
    f"WHEN {_CHANGED} BEGIN {_DELETE_OLD} {_INSERT_NEW} END",
)


def ensure_sqlite_triggers(conn) -> None:
    """Create the FTS table's and run_gram's triggers where a table rebuild dropped them (no-op when present, or
    before the revision that made the table)."""
    present = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'"))}
    for table, triggers in ((FTS_TABLE, SQLITE_TRIGGERS), (GRAM_TABLE, SQLITE_GRAM_TRIGGERS)):
        if table in present:
            for ddl in triggers:
                conn.execute(text(ddl))


def indexable(needle: str | None) -> bool:
    """Whether the name index can answer this fragment: MIN_CHARS or more, and no NUL (FTS5's query parser ends a
    string there: "unterminated string"; such a fragment is matched by LIKE, which takes it as a bound value)."""
    return bool(needle) and len(needle) >= MIN_CHARS and "\x00" not in needle


def walkable(needle: str | None) -> bool:
    """Whether run_gram can find this fragment's runs: indexable and ASCII (the triggers lower names with the
    database's lower(), which on SQLite folds ASCII only, while its FTS index folds every letter's case)."""
    return indexable(needle) and needle.isascii()


def fts_phrase(needle: str) -> str:
    """needle as one FTS5 phrase (a substring match under the trigram tokenizer); quotes doubled."""
    return '"' + needle.replace('"', '""') + '"'


def is_index_table(name: str) -> bool:
    """Whether a table is one of the name search's own (the FTS index and its shadow tables, run_gram and its
    positions): not in the models, kept by triggers; Alembic must leave them."""
    return name in (GRAM_TABLE, POSITIONS) or name == FTS_TABLE or name.startswith(FTS_TABLE + "_")


# --- the rarest trigram -------------------------------------------------------------------------------------------

SAMPLE = 2_000  # runs whose names tell how common each trigram is
SAMPLE_SECONDS = 600.0  # a sample is taken again after this long
_samples: dict[str, tuple[float, Counter]] = {}  # database URL -> (when taken, trigram -> sampled names holding it)
_sampling = threading.Lock()


def trigrams(lowered: str) -> list[str]:
    """The distinct trigrams of an already lower-cased string, in order of first appearance."""
    return list(dict.fromkeys(lowered[i:i + 3] for i in range(len(lowered) - 2)))


def _take(session) -> Counter:
    """Trigram -> how many of SAMPLE runs' (database-lowered) names, picked at random by id, hold it."""
    low, high = session.execute(sa.text("SELECT min(id), max(id) FROM run")).one()
    if low is None:
        return Counter()
    ids = range(low, high + 1) if high - low < SAMPLE else random.sample(range(low, high + 1), SAMPLE)
    names = session.execute(sa.text("SELECT lower(name) FROM run WHERE id IN :ids").bindparams(
        sa.bindparam("ids", expanding=True)), {"ids": list(ids)}).scalars()
    return Counter(g for name in names for g in trigrams(name))


def rarest_gram(session, lowered: str) -> str:
    """The trigram of lowered found in the fewest sampled names (ties: the later one); the sample is one per process
    and database, taken again once SAMPLE_SECONDS old. The choice only sets how far a walk reads before its page is
    full, never which runs it finds."""
    bind = session.get_bind()
    key = str(getattr(bind, "engine", bind).url)  # a session bound to a connection (a test's) has its engine
    with _sampling:
        taken = _samples.get(key)
        if taken is None or time.monotonic() - taken[0] > SAMPLE_SECONDS:
            taken = _samples[key] = (time.monotonic(), _take(session))
    return min(reversed(trigrams(lowered)), key=lambda g: taken[1].get(g, 0))
