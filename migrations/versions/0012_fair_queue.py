"""a fair queue: each run and sweep has a priority (high, normal, low), and each worker says which queue it consumes,
so the dispatcher publishes only what the live workers of a queue can start

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 13:00:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0012'
down_revision: Union[str, Sequence[str], None] = '0011'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

PRIORITY_CHECK = "priority IN ('high', 'normal', 'low')"


def upgrade() -> None:
    """run.priority and sweep.priority (existing rows: normal), the dispatcher's indexes, worker.queue."""
    if op.get_bind().dialect.name == 'sqlite':
        # ADD COLUMN with its CHECK (SQLite tests the existing rows, all 'normal'): batch mode would copy `run` and
        # rebuild each of its indexes to add a table-level CHECK, a minute at a million runs.
        op.execute(f"ALTER TABLE run ADD COLUMN priority VARCHAR(8) DEFAULT 'normal' NOT NULL "
                   f"CONSTRAINT ck_run_priority CHECK ({PRIORITY_CHECK})")
    else:
        with op.batch_alter_table('run', schema=None) as batch_op:
            batch_op.add_column(sa.Column('priority', sa.String(length=8), server_default='normal', nullable=False))
            batch_op.create_check_constraint(batch_op.f('ck_run_priority'), PRIORITY_CHECK)
    op.create_index('ix_run_waiting', 'run', ['status', 'queue', 'published_at'], unique=False)
    with op.batch_alter_table('sweep', schema=None) as batch_op:
        batch_op.add_column(sa.Column('priority', sa.String(length=8), server_default='normal', nullable=False))
    op.create_index(op.f('ix_run_attempt_ended_at'), 'run_attempt', ['ended_at'], unique=False)
    with op.batch_alter_table('worker', schema=None) as batch_op:
        batch_op.add_column(sa.Column('queue', sa.String(length=200), nullable=True))


def downgrade() -> None:
    """Drop them again."""
    with op.batch_alter_table('worker', schema=None) as batch_op:
        batch_op.drop_column('queue')
    op.drop_index(op.f('ix_run_attempt_ended_at'), table_name='run_attempt')
    with op.batch_alter_table('sweep', schema=None) as batch_op:
        batch_op.drop_column('priority')
    with op.batch_alter_table('run', schema=None, recreate='auto',
                              table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.drop_index('ix_run_waiting')
        batch_op.drop_constraint(batch_op.f('ck_run_priority'), type_='check')
        batch_op.drop_column('priority')
