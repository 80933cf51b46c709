"""Run-name search through an index: an FTS5 trigram table on SQLite, a pg_trgm GIN index on PostgreSQL, and on both
run_gram, each run's name trigrams with its list key and its lowered name.

The FTS / trigram index answers "name contains s" (any case) for s of three characters or more without reading every
run, but not in any order. run_gram answers "the newest runs whose name contains s": walk one trigram of s through its
rows (project_id, archived, created_at, run_id) newest first, test the name each row carries (no look-up of the run
unless another filter needs it), stop at the page's last match. The trigram walked is the rarest among the range's
newest runs, judged from run_gram itself (rarest_gram). Triggers keep both in step with run.name on SQLite, and
run_gram on PostgreSQL; a table rebuild in a later migration (Alembic's batch mode copies `run` and drops the old one)
drops SQLite's triggers, so db.upgrade() puts them back after every migration.
"""
from __future__ import annotations

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

PROBE_DEPTH = 1_000  # a trigram's rows stepped over, newest first, to see how far back its newest ones reach
PROBE_GRAMS = 12  # trigrams of a long fragment that are probed, spread along it


def trigrams(lowered: str) -> list[str]:
    """The distinct trigrams of an already lower-cased string, in order of first appearance."""
    return list(dict.fromkeys(lowered[i:i + 3] for i in range(len(lowered) - 2)))


def _probe(session, gram: str, project: int, archived: bool, oldest_first: bool) -> tuple[int, tuple | None]:
    """A trigram's rows in one range: (how many, when fewer than PROBE_DEPTH, None) or (PROBE_DEPTH, the key of its
    PROBE_DEPTH-th row from the newest end, or the oldest end for an oldest-first list)."""
    where = "gram = :g AND project_id = :p AND archived = :a"
    params = {"g": gram, "p": project, "a": archived, "k": PROBE_DEPTH}
    way = "ASC" if oldest_first else "DESC"
    deep = session.execute(sa.text(f"SELECT created_at, run_id FROM {GRAM_TABLE} WHERE {where} "
                                   f"ORDER BY created_at {way}, run_id {way} LIMIT 1 OFFSET :k"), params).first()
    if deep is not None:
        return PROBE_DEPTH, tuple(deep)
    return session.execute(sa.text(f"SELECT count(*) FROM (SELECT 1 FROM {GRAM_TABLE} WHERE {where} LIMIT :k) "
                                   f"AS few"), params).scalar_one(), None


def rarest_gram(session, lowered: str, project: int, archived: bool, oldest_first: bool = False) -> str:
    """The trigram of lowered with the fewest rows in a range, or, where each has PROBE_DEPTH or more, the one whose
    PROBE_DEPTH-th row from the newest end (the oldest, for an oldest-first list) lies furthest in: read from
    run_gram's key alone, a fraction of a millisecond a trigram. It sets how far a walk reads before its page is
    full, never which runs it finds: a common trigram (`run`, in every name) would be walked past every recent run."""
    grams = trigrams(lowered)
    if len(grams) > PROBE_GRAMS:
        grams = [grams[i * len(grams) // PROBE_GRAMS] for i in range(PROBE_GRAMS)]
    probes = {g: _probe(session, g, project, archived, oldest_first) for g in grams}
    few = [g for g in grams if probes[g][1] is None]
    if few:
        return min(few, key=lambda g: probes[g][0])
    return (max if oldest_first else min)(grams, key=lambda g: probes[g][1])
