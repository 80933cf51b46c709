"""initial schema: datasets, runs, epochs, lr_find, artifacts, workers

Revision ID: 0001
Revises:
Create Date: 2026-11-29 15:23:29.098862

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0001'
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Create every table; timestamps are naive UTC (app.store.models.UTCDateTime adds the zone back on read)."""
    op.create_table('dataset',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('report', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dataset')),
    sa.UniqueConstraint('name', name=op.f('uq_dataset_name'))
    )
    op.create_table('run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('dataset', sa.String(length=500), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('cancel_requested', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('worker', sa.String(length=200), nullable=True),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('traceback', sa.Text(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('progress', sa.JSON(), nullable=True),
    sa.Column('techniques', sa.JSON(), nullable=False),
    sa.Column('best_accuracy', sa.Float(), nullable=True),
    sa.Column('tta_accuracy', sa.Float(), nullable=True),
    sa.Column('model_path', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
                       name=op.f('ck_run_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_run'))
    )
    op.create_index(op.f('ix_run_created_at'), 'run', ['created_at'], unique=False)
    op.create_index(op.f('ix_run_dataset'), 'run', ['dataset'], unique=False)
    op.create_index(op.f('ix_run_status'), 'run', ['status'], unique=False)

    op.create_table('artifact',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=50), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_artifact_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'kind', name=op.f('pk_artifact'))
    )
    op.create_table('epoch',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('stage', sa.Integer(), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('train_loss', sa.Float(), nullable=True),
    sa.Column('valid_loss', sa.Float(), nullable=True),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_epoch_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'stage', 'epoch', name=op.f('pk_epoch'))
    )
    op.create_table('lr_find',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('stage', sa.Integer(), nullable=False),
    sa.Column('suggestion', sa.Float(), nullable=True),
    sa.Column('lrs', sa.JSON(), nullable=False),
    sa.Column('losses', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_lr_find_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'stage', name=op.f('pk_lr_find'))
    )
    op.create_table('worker',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('host', sa.String(length=200), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('gpu', sa.String(length=200), nullable=True),
    sa.Column('gpu_memory', sa.BigInteger(), nullable=True),
    sa.Column('current_run_id', sa.Integer(), nullable=True),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('last_seen', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['current_run_id'], ['run.id'], name=op.f('fk_worker_current_run_id_run'),
                            ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_worker'))
    )


def downgrade() -> None:
    """Drop every table, children before the run table they reference."""
    op.drop_table('worker')
    op.drop_table('lr_find')
    op.drop_table('epoch')
    op.drop_table('artifact')
    op.drop_index(op.f('ix_run_status'), table_name='run')
    op.drop_index(op.f('ix_run_dataset'), table_name='run')
    op.drop_index(op.f('ix_run_created_at'), table_name='run')
    op.drop_table('run')
    op.drop_table('dataset')
