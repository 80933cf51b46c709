"""predictions: images sent to a succeeded run's model and the top classes a predictor process answered

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 00:00:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Create the prediction table."""
    op.create_table('prediction',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='queued', nullable=False),
    sa.Column('names', sa.JSON(), nullable=False),
    sa.Column('images', sa.JSON(), nullable=True),
    sa.Column('results', sa.JSON(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('predictor', sa.String(length=200), nullable=True),
    sa.Column('loaded_model', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('claimed_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint("status IN ('queued', 'loading', 'running', 'done', 'failed')",
                       name=op.f('ck_prediction_status')),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_prediction_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prediction'))
    )
    op.create_index('ix_prediction_status_created', 'prediction', ['status', 'created_at'], unique=False)


def downgrade() -> None:
    """Drop the prediction table."""
    op.drop_index('ix_prediction_status_created', table_name='prediction')
    op.drop_table('prediction')
