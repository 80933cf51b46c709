"""runs list at any size: an index per list order, tags in run_tag, an indexed name search

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 10:00:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: Union[str, Sequence[str], None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# Frozen copies of app.store.models.LIST_INDEXES and app.store.name_search (a revision never imports app code).
LIST_INDEXES = {
    "ix_run_list_id": ("archived", "id"),
    "ix_run_list_created_at": ("archived", "created_at", "id"),
    "ix_run_list_name": ("archived", "name", "id"),
    "ix_run_list_finished_at": ("archived", "finished_at", "id"),
    "ix_run_list_best_accuracy": ("archived", "best_accuracy", "id"),
    "ix_run_list_tta_accuracy": ("archived", "tta_accuracy", "id"),
    "ix_run_list_status": ("archived", "status", "created_at", "id"),
    "ix_run_list_dataset": ("archived", "dataset", "created_at", "id"),
    "ix_run_list_status_best_accuracy": ("archived", "status", "best_accuracy", "id"),
    "ix_run_list_status_tta_accuracy": ("archived", "status", "tta_accuracy", "id"),
}
FTS = "run_name_fts"
TRIGGERS = (
    f"CREATE TRIGGER IF NOT EXISTS run_name_fts_insert AFTER INSERT ON run BEGIN "
    f"INSERT INTO {FTS}(rowid, name) VALUES (new.id, new.name); END",
    f"CREATE TRIGGER IF NOT EXISTS run_name_fts_delete AFTER DELETE ON run BEGIN "
    f"INSERT INTO {FTS}({FTS}, rowid, name) VALUES ('delete', old.id, old.name); END",
    f"CREATE TRIGGER IF NOT EXISTS run_name_fts_rename AFTER UPDATE OF name ON run BEGIN "
    f"INSERT INTO {FTS}({FTS}, rowid, name) VALUES ('delete', old.id, old.name); "
    f"INSERT INTO {FTS}(rowid, name) VALUES (new.id, new.name); END",
)


def _split_tags(conn) -> None:
    """Copy each run's ",a,b," tags into run_tag rows, in SQL (a million runs must not pass through Python)."""
    # A recursive CTE walks each tags string comma by comma; tags cannot hold a comma, so the split is exact.
    conn.execute(sa.text(
        "INSERT INTO run_tag (run_id, tag) "
        "WITH RECURSIVE parts(run_id, tag, rest) AS ("
        "  SELECT id, '', substr(tags, 2) FROM run WHERE tags <> ''"
        "  UNION ALL"
        "  SELECT run_id, substr(rest, 1, instr(rest, ',') - 1), substr(rest, instr(rest, ',') + 1)"
        "  FROM parts WHERE rest <> '')"
        " SELECT DISTINCT run_id, tag FROM parts WHERE tag <> ''"))


def _split_tags_pg(conn) -> None:
    """Copy each run's ",a,b," tags into run_tag rows (PostgreSQL splits them itself)."""
    conn.execute(sa.text(
        "INSERT INTO run_tag (run_id, tag) SELECT DISTINCT id, t FROM run, "
        "unnest(string_to_array(trim(both ',' from tags), ',')) AS t WHERE tags <> '' AND t <> ''"))


def upgrade() -> None:
    """Index every order of the runs list (led by archived), move tags into run_tag and index run names."""
    op.create_table(
        'run_tag',
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('tag', sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_run_tag_run_id_run'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('run_id', 'tag', name=op.f('pk_run_tag')))
    conn = op.get_bind()
    postgres = conn.dialect.name == 'postgresql'
    (_split_tags_pg if postgres else _split_tags)(conn)
    op.create_index('ix_run_tag_tag', 'run_tag', ['tag', 'run_id'], unique=False)
    # Plain CREATE INDEX, not batch mode: adding an index never needs SQLite's table copy.
    op.drop_index('ix_run_archived', table_name='run')
    for name, cols in LIST_INDEXES.items():
        op.create_index(name, 'run', list(cols), unique=False)
    if postgres:
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute("CREATE INDEX ix_run_name_trgm ON run USING gin (name gin_trgm_ops)")
        op.execute("ANALYZE run")
        op.execute("ANALYZE run_tag")
    else:
        op.execute(f"CREATE VIRTUAL TABLE {FTS} USING fts5(name, content='run', content_rowid='id', "
                   "tokenize='trigram')")
        op.execute(f"INSERT INTO {FTS}({FTS}) VALUES ('rebuild')")
        for ddl in TRIGGERS:
            op.execute(ddl)


def downgrade() -> None:
    """Drop the name index, the list indexes and run_tag (run.tags still holds every run's tags)."""
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP INDEX IF EXISTS ix_run_name_trgm")
    else:
        for trig in ("run_name_fts_insert", "run_name_fts_delete", "run_name_fts_rename"):
            op.execute(f"DROP TRIGGER IF EXISTS {trig}")
        op.execute(f"DROP TABLE IF EXISTS {FTS}")
    for name in LIST_INDEXES:
        op.drop_index(name, table_name='run')
    op.create_index('ix_run_archived', 'run', ['archived'], unique=False)
    op.drop_index('ix_run_tag_tag', table_name='run_tag')
    op.drop_table('run_tag')
