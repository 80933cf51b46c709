"""dataset names unique per project (not site-wide: a name must not tell another project's dataset exists); sweeps
and searches say who launched them (their runs inherit it)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 14:00:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: Union[str, Sequence[str], None] = '0010'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

LAUNCHED = ('sweep', 'search')


def upgrade() -> None:
    """dataset: (project_id, name) unique instead of name; sweep and search: a launched_by."""
    with op.batch_alter_table('dataset', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_dataset_name'), type_='unique')
        batch_op.create_unique_constraint('uq_dataset_project_name', ['project_id', 'name'])
    for table in LAUNCHED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('launched_by', sa.Integer(), nullable=True))
            batch_op.create_foreign_key(batch_op.f(f'fk_{table}_launched_by_person'), 'person',
                                        ['launched_by'], ['id'], ondelete='SET NULL')


def downgrade() -> None:
    """Back to site-wide dataset names (fails while two projects share one) and no launcher on sweeps or searches."""
    for table in reversed(LAUNCHED):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f(f'fk_{table}_launched_by_person'), type_='foreignkey')
            batch_op.drop_column('launched_by')
    with op.batch_alter_table('dataset', schema=None) as batch_op:
        batch_op.drop_constraint('uq_dataset_project_name', type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_dataset_name'), ['name'])
