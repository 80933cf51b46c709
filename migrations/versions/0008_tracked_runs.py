"""tracked runs: run.kind (queued | tracked) and run.last_contact_at

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 00:30:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Add run.kind (every existing run was queued) and run.last_contact_at (a tracked run's last API write)."""
    with op.batch_alter_table('run', schema=None, recreate='auto',
                              table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), server_default='queued', nullable=False))
        batch_op.add_column(sa.Column('last_contact_at', sa.DateTime(), nullable=True))
        batch_op.create_check_constraint('kind', "kind IN ('queued', 'tracked')")


def downgrade() -> None:
    """Drop the kind and last_contact_at columns."""
    with op.batch_alter_table('run', schema=None, recreate='auto',
                              table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.drop_constraint('kind', type_='check')
        batch_op.drop_column('last_contact_at')
        batch_op.drop_column('kind')
