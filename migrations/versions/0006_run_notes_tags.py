"""run notes, tags and archived flag

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 10:00:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Add run.notes, run.tags (",a,b," so one LIKE finds a tag on both backends) and run.archived."""
    # SQLite hands a deleted newest id to the next row unless the table says AUTOINCREMENT; runs can now be
    # deleted, and a link to a deleted run must not open another one. (PostgreSQL sequences never go back.)
    with op.batch_alter_table('run', schema=None, recreate='auto',
                              table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.add_column(sa.Column('notes', sa.Text(), server_default='', nullable=False))
        batch_op.add_column(sa.Column('tags', sa.String(length=1000), server_default='', nullable=False))
        batch_op.add_column(sa.Column('archived', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.create_index(batch_op.f('ix_run_archived'), ['archived'], unique=False)


def downgrade() -> None:
    """Drop the notes, tags and archived columns."""
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_run_archived'))
        batch_op.drop_column('archived')
        batch_op.drop_column('tags')
        batch_op.drop_column('notes')
