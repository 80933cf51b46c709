"""run recovery: queue, publish time, re-publish count, checkpoints, resume point, attempts and the reconciler's lease

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 21:00:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Add the recovery columns to run, the run_attempt and lease tables; runs stored before count as published."""
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.add_column(sa.Column('queue', sa.String(length=200), server_default='fitboard', nullable=False))
        batch_op.add_column(sa.Column('published_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('republish_count', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('checkpoint', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('resume_from', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('attempt_limit', sa.Integer(), nullable=True))
    # Runs queued before this revision were enqueued the old way; the reconciler re-sends them after
    # FITBOARD_REPUBLISH_AFTER if no worker took them.
    op.execute("UPDATE run SET published_at = created_at")
    op.create_table('run_attempt',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('worker', sa.String(length=200), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('ended_at', sa.DateTime(), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('resumed_from', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_run_attempt_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'attempt', name=op.f('pk_run_attempt'))
    )
    op.create_table('lease',
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('holder', sa.String(length=200), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_lease'))
    )


def downgrade() -> None:
    """Drop the lease and run_attempt tables and the recovery columns."""
    op.drop_table('lease')
    op.drop_table('run_attempt')
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.drop_column('attempt_limit')
        batch_op.drop_column('resume_from')
        batch_op.drop_column('checkpoint')
        batch_op.drop_column('republish_count')
        batch_op.drop_column('published_at')
        batch_op.drop_column('queue')
