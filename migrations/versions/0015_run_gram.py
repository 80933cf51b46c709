"""run_gram: each run's name trigrams with its list key (project_id, archived, created_at, id) and its lowered name, so
a name fragment's newest matches are a walk of one trigram's rows in that order, each tested on the name it carries,
stopping at the page's last match (the FTS5 / pg_trgm index answers "which runs" but not "which are newest": a
fragment in a tenth of a million old runs sorted them all)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 22:00:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0015'
down_revision: Union[str, Sequence[str], None] = '0014'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# Frozen copies of app.store.name_search's trigger text (a revision never imports app code).
POSITIONS = "run_gram_position"  # SQLite: the numbers 1..MAX_POSITION (a trigger may not use a recursive CTE)
MAX_POSITION = 4096  # a run's name is at most 200 characters (app.core.run_meta.MAX_NAME)


def _grams_of(row: str) -> str:
    """SQLite: SELECT the trigrams of a run row's lower-cased name with its key (row is new or old)."""
    return (f"SELECT DISTINCT substr(lower({row}.name), p, 3), {row}.project_id, {row}.archived, {row}.created_at, "
            f"{row}.id, lower({row}.name) FROM {POSITIONS} WHERE p <= length({row}.name) - 2")


# Every column of the key compared by =, so each trigram's row is one look-up of the key (a row-value IN would use
# the gram alone: SQLite finds the subquery's affinity unlike the typed columns').
_DELETE_OLD = (f"DELETE FROM run_gram WHERE run_id = old.id AND project_id = old.project_id "
               f"AND archived = old.archived AND created_at = old.created_at AND gram IN "
               f"(SELECT substr(lower(old.name), p, 3) FROM {POSITIONS} WHERE p <= length(old.name) - 2);")
_INSERT_NEW = (f"INSERT OR IGNORE INTO run_gram (gram, project_id, archived, created_at, run_id, name) "
               f"{_grams_of('new')};")
_CHANGED = ("old.name IS NOT new.name OR old.project_id IS NOT new.project_id OR old.archived IS NOT new.archived "
            "OR old.created_at IS NOT new.created_at")
SQLITE_TRIGGERS = (
    f"CREATE TRIGGER IF NOT EXISTS run_gram_insert AFTER INSERT ON run BEGIN {_INSERT_NEW} END",
    f"CREATE TRIGGER IF NOT EXISTS run_gram_delete AFTER DELETE ON run BEGIN {_DELETE_OLD} END",
    f"CREATE TRIGGER IF NOT EXISTS run_gram_update AFTER UPDATE OF name, project_id, archived, created_at ON run "
    f"WHEN {_CHANGED} BEGIN {_DELETE_OLD} {_INSERT_NEW} END",
)
PG_FUNCTION = """
CREATE OR REPLACE FUNCTION run_gram_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP <> 'INSERT' THEN
    DELETE FROM run_gram WHERE run_id = OLD.id AND project_id = OLD.project_id AND archived = OLD.archived
      AND created_at = OLD.created_at
      AND gram IN (SELECT substr(lower(OLD.name), p, 3) FROM generate_series(1, length(OLD.name) - 2) AS p);
  END IF;
  IF TG_OP <> 'DELETE' THEN
    INSERT INTO run_gram (gram, project_id, archived, created_at, run_id, name)
      SELECT DISTINCT substr(lower(NEW.name), p, 3), NEW.project_id, NEW.archived, NEW.created_at, NEW.id,
        lower(NEW.name)
      FROM generate_series(1, length(NEW.name) - 2) AS p
      ON CONFLICT DO NOTHING;
  END IF;
  RETURN NULL;
END $$
"""
PG_TRIGGERS = (
    "CREATE TRIGGER run_gram_write AFTER INSERT OR DELETE ON run FOR EACH ROW EXECUTE FUNCTION run_gram_sync()",
    "CREATE TRIGGER run_gram_update AFTER UPDATE OF name, project_id, archived, created_at ON run FOR EACH ROW "
    "WHEN (OLD.name IS DISTINCT FROM NEW.name OR OLD.project_id IS DISTINCT FROM NEW.project_id "
    "OR OLD.archived IS DISTINCT FROM NEW.archived OR OLD.created_at IS DISTINCT FROM NEW.created_at) "
    "EXECUTE FUNCTION run_gram_sync()",
)
COLUMNS = (sa.Column('gram', sa.String(3), nullable=False), sa.Column('project_id', sa.Integer(), nullable=False),
           sa.Column('archived', sa.Boolean(), nullable=False), sa.Column('created_at', sa.DateTime(), nullable=False),
           sa.Column('run_id', sa.Integer(), nullable=False), sa.Column('name', sa.String(200), nullable=False))
KEY = ['gram', 'project_id', 'archived', 'created_at', 'run_id']


def upgrade() -> None:
    """Create run_gram, fill it from every run's name in key order, and keep it in step with triggers."""
    if op.get_bind().dialect.name == 'postgresql':
        # Filled without its key, then the key built once over the rows: faster than a B-tree grown row by row.
        op.create_table('run_gram', *COLUMNS)
        # Each trigram at its first place in the name only (strpos), instead of a DISTINCT that sorts every row
        op.execute("INSERT INTO run_gram (gram, project_id, archived, created_at, run_id, name) "
                   "SELECT substr(l, p, 3), project_id, archived, created_at, id, l "
                   "FROM (SELECT lower(name) AS l, project_id, archived, created_at, id FROM run) AS r, "
                   "generate_series(1, length(l) - 2) AS p WHERE strpos(l, substr(l, p, 3)) = p")
        # The name rides in the key's index: a walk tests it there (an index-only scan), not in the table
        op.execute(f"ALTER TABLE run_gram ADD CONSTRAINT pk_run_gram PRIMARY KEY ({', '.join(KEY)}) INCLUDE (name)")
        op.execute(PG_FUNCTION)
        for ddl in PG_TRIGGERS:
            op.execute(ddl)
        op.execute("ANALYZE run_gram")
        return
    # SQLite: a WITHOUT ROWID table is its key's B-tree (the name beside each key); rows arrive sorted, so each
    # lands at its end, and a name's repeated trigram meets its twin there (OR IGNORE): a DISTINCT would sort the
    # 7.9 million rows of a million runs twice (51 s against 26 s).
    op.create_table('run_gram', *COLUMNS, sa.PrimaryKeyConstraint(*KEY, name='pk_run_gram'),
                    sqlite_with_rowid=False)
    op.execute(f"CREATE TABLE {POSITIONS} (p INTEGER PRIMARY KEY)")
    op.execute(f"INSERT INTO {POSITIONS} (p) WITH RECURSIVE n(p) AS (SELECT 1 UNION ALL SELECT p + 1 FROM n "
               f"WHERE p < {MAX_POSITION}) SELECT p FROM n")
    op.execute(f"INSERT OR IGNORE INTO run_gram (gram, project_id, archived, created_at, run_id, name) "
               f"SELECT substr(lower(r.name), p, 3), r.project_id, r.archived, r.created_at, r.id, "
               f"lower(r.name) "
               f"FROM run AS r, {POSITIONS} WHERE p <= length(r.name) - 2 ORDER BY 1, 2, 3, 4, 5")
    for ddl in SQLITE_TRIGGERS:
        op.execute(ddl)


def downgrade() -> None:
    """Drop run_gram and what keeps it."""
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER IF EXISTS run_gram_write ON run")
        op.execute("DROP TRIGGER IF EXISTS run_gram_update ON run")
        op.execute("DROP FUNCTION IF EXISTS run_gram_sync()")
    else:
        for name in ("run_gram_insert", "run_gram_delete", "run_gram_update"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute(f"DROP TABLE IF EXISTS {POSITIONS}")
    op.drop_table('run_gram')
