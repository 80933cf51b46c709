"""sweeps: ablation table, and each run's sweep and variant

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 15:50:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Add the sweep table and run.sweep_id / run.variant (batch mode rebuilds run on SQLite)."""
    op.create_table('sweep',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('base', sa.JSON(), nullable=False),
    sa.Column('vary', sa.JSON(), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('seeds', sa.JSON(), nullable=False),
    sa.Column('variants', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("mode IN ('grid', 'one_at_a_time')", name=op.f('ck_sweep_mode')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sweep'))
    )
    with op.batch_alter_table('sweep', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sweep_created_at'), ['created_at'], unique=False)
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sweep_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('variant', sa.String(length=500), nullable=True))
        batch_op.create_index(batch_op.f('ix_run_sweep_id'), ['sweep_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_run_sweep_id_sweep'), 'sweep', ['sweep_id'], ['id'],
                                    ondelete='SET NULL')


def downgrade() -> None:
    """Drop the sweep columns and table."""
    with op.batch_alter_table('run', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_run_sweep_id_sweep'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_run_sweep_id'))
        batch_op.drop_column('variant')
        batch_op.drop_column('sweep_id')
    with op.batch_alter_table('sweep', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sweep_created_at'))
    op.drop_table('sweep')
