"""searches: the search table, run.search_id / run.trial_number, and the terminal run status 'pruned'

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 00:30:00

Optuna's own tables (studies, trials, ...) live in the same database but are created by Optuna's RDB storage on
first use, with Optuna's own alembic_version table: migrations/env.py leaves them out of fitboard's migrations.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

OLD = "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')"
NEW = "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'pruned')"


def upgrade() -> None:
    """Add the search table, each run's search and trial number, and allow status 'pruned'."""
    op.create_table('search',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('base', sa.JSON(), nullable=False),
    sa.Column('space', sa.JSON(), nullable=False),
    sa.Column('options', sa.JSON(), nullable=False),
    sa.Column('study_name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('verify_sweep_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint("status IN ('running', 'verifying', 'done', 'failed', 'cancelled')",
                       name=op.f('ck_search_status')),
    sa.ForeignKeyConstraint(['verify_sweep_id'], ['sweep.id'], name=op.f('fk_search_verify_sweep_id_sweep'),
                            ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_search')),
    sa.UniqueConstraint('study_name', name=op.f('uq_search_study_name'))
    )
    with op.batch_alter_table('search', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_search_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_search_status'), ['status'], unique=False)
    with op.batch_alter_table('run', schema=None, recreate='auto',
                              table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.add_column(sa.Column('search_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('trial_number', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_run_search_id'), ['search_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_run_search_id_search'), 'search', ['search_id'], ['id'],
                                    ondelete='SET NULL')
        batch_op.drop_constraint(batch_op.f('ck_run_status'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_run_status'), NEW)


def downgrade() -> None:
    """Drop the search columns and table; pruned runs become cancelled (the old set has no 'pruned')."""
    op.execute("UPDATE run SET status = 'cancelled' WHERE status = 'pruned'")
    with op.batch_alter_table('run', schema=None, recreate='auto',
                              table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_run_status'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_run_status'), OLD)
        batch_op.drop_constraint(batch_op.f('fk_run_search_id_search'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_run_search_id'))
        batch_op.drop_column('trial_number')
        batch_op.drop_column('search_id')
    with op.batch_alter_table('search', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_search_status'))
        batch_op.drop_index(batch_op.f('ix_search_created_at'))
    op.drop_table('search')
