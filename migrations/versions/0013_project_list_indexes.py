"""runs list per project: the list indexes and the tag index led by project_id (run_tag carries its run's project)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 12:40:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0013'
down_revision: Union[str, Sequence[str], None] = '0012'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# Frozen copy of app.store.models.LIST_INDEXES (a revision never imports app code); 0009's are these without
# project_id.
LIST_INDEXES = {
    "ix_run_list_id": ("project_id", "archived", "id"),
    "ix_run_list_created_at": ("project_id", "archived", "created_at", "id"),
    "ix_run_list_name": ("project_id", "archived", "name", "id"),
    "ix_run_list_finished_at": ("project_id", "archived", "finished_at", "id"),
    "ix_run_list_best_accuracy": ("project_id", "archived", "best_accuracy", "id"),
    "ix_run_list_tta_accuracy": ("project_id", "archived", "tta_accuracy", "id"),
    "ix_run_list_status": ("project_id", "archived", "status", "created_at", "id"),
    "ix_run_list_dataset": ("project_id", "archived", "dataset", "created_at", "id"),
    "ix_run_list_status_best_accuracy": ("project_id", "archived", "status", "best_accuracy", "id"),
    "ix_run_list_status_tta_accuracy": ("project_id", "archived", "status", "tta_accuracy", "id"),
}


def upgrade() -> None:
    """Re-create the list indexes led by project_id (the project's own index is then a prefix of each, dropped), give
    run_tag its run's project and lead its tag index with it."""
    # Plain ALTER TABLE and CREATE INDEX, never batch mode: no table is copied, and each index is built once over
    # the rows already there (faster than growing it row by row).
    for name in LIST_INDEXES:
        op.drop_index(name, table_name='run')
    op.drop_index('ix_run_project_id', table_name='run')
    op.drop_index('ix_run_tag_tag', table_name='run_tag')
    op.add_column('run_tag', sa.Column('project_id', sa.Integer(), server_default='1', nullable=False))
    op.execute("UPDATE run_tag SET project_id = run.project_id FROM run "
               "WHERE run.id = run_tag.run_id AND run.project_id <> 1")
    op.create_index('ix_run_tag_tag', 'run_tag', ['project_id', 'tag', 'run_id'], unique=False)
    for name, cols in LIST_INDEXES.items():
        op.create_index(name, 'run', list(cols), unique=False)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("ANALYZE run")
        op.execute("ANALYZE run_tag")


def downgrade() -> None:
    """Back to 0010's indexes: the list's led by archived, run_tag's by tag, and project_id's own on run."""
    for name in LIST_INDEXES:
        op.drop_index(name, table_name='run')
    op.drop_index('ix_run_tag_tag', table_name='run_tag')
    if op.get_bind().dialect.name == 'sqlite':
        with op.batch_alter_table('run_tag') as batch_op:
            batch_op.drop_column('project_id')
    else:
        op.drop_column('run_tag', 'project_id')
    op.create_index('ix_run_tag_tag', 'run_tag', ['tag', 'run_id'], unique=False)
    op.create_index('ix_run_project_id', 'run', ['project_id'], unique=False)
    for name, cols in LIST_INDEXES.items():
        op.create_index(name, 'run', list(cols[1:]), unique=False)
