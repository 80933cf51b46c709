"""artifact store: artifacts by run id and kind (no stored paths), and each worker's last doctor report

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 23:40:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Replace artifact.path and run.model_path by the artifact's size; add worker.doctor.

    The files stay where they are: the default artifact root ($FITBOARD_HOME/artifacts/<run id>/<file>) is where
    workers wrote them before this revision."""
    with op.batch_alter_table('artifact', schema=None) as batch_op:
        batch_op.add_column(sa.Column('size', sa.BigInteger(), nullable=True))
        batch_op.drop_column('path')
    # Not batch mode on run: on SQLite that copies the table and DROPs the old one, and with foreign keys on the drop
    # would cascade to every run's epoch rows, curves and attempts. SQLite >= 3.35 and Postgres drop a column in place.
    op.execute('ALTER TABLE run DROP COLUMN model_path')
    op.add_column('worker', sa.Column('doctor', sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop worker.doctor; bring back the path columns (filled with each kind's file name under its run's id)."""
    op.execute('ALTER TABLE worker DROP COLUMN doctor')
    op.add_column('run', sa.Column('model_path', sa.Text(), nullable=True))
    with op.batch_alter_table('artifact', schema=None) as batch_op:
        batch_op.add_column(sa.Column('path', sa.Text(), server_default='', nullable=False))
        batch_op.drop_column('size')
