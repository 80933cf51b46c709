"""people and projects: accounts, API tokens, memberships, the audit log; every run, sweep, search, dataset and
prediction belongs to a project (what exists moves to `default`), and runs say who launched them

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 09:45:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: Union[str, Sequence[str], None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

OWNED = ('dataset', 'run', 'sweep', 'search', 'prediction')
AUTOINCREMENT = {'run': {'sqlite_autoincrement': True}}


def _people_tables() -> None:
    """The person, api_token, membership, audit and access_generation tables."""
    op.create_table('person',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=False),
    sa.Column('site_admin', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('disabled', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('session_version', sa.Integer(), server_default='0', nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_person')),
    sa.UniqueConstraint('name', name=op.f('uq_person_name')))
    op.create_table('api_token',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('label', sa.String(length=100), server_default='', nullable=False),
    sa.Column('scope', sa.String(length=8), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('last_used_at', sa.DateTime(), nullable=True),
    sa.Column('expires_at', sa.DateTime(), nullable=True),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint("scope IN ('read', 'write', 'worker')", name=op.f('ck_api_token_scope')),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], name=op.f('fk_api_token_person_id_person'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_token')),
    sa.UniqueConstraint('digest', name=op.f('uq_api_token_digest')))
    op.create_index(op.f('ix_api_token_person_id'), 'api_token', ['person_id'], unique=False)
    op.create_table('membership',
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=8), nullable=False),
    sa.CheckConstraint("role IN ('viewer', 'member', 'admin')", name=op.f('ck_membership_role')),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_membership_project_id_project'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], name=op.f('fk_membership_person_id_person'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('project_id', 'person_id', name=op.f('pk_membership')))
    op.create_index(op.f('ix_membership_person_id'), 'membership', ['person_id'], unique=False)
    op.create_table('audit',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('target', sa.String(length=200), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=True),
    sa.Column('address', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], name=op.f('fk_audit_person_id_person'),
                            ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_audit_project_id_project'),
                            ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit')))
    op.create_index(op.f('ix_audit_at'), 'audit', ['at'], unique=False)
    op.create_table('access_generation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('value', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_access_generation')))
    op.execute("INSERT INTO access_generation (id, value) VALUES (1, 0)")


def upgrade() -> None:
    """Create the project `default` (id 1) and the people tables; give every owned table a project_id (existing
    rows: `default`) and runs a launched_by."""
    op.create_table('project',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_project')),
    sa.UniqueConstraint('name', name=op.f('uq_project_name')))
    op.execute("INSERT INTO project (id, name, created_at) VALUES (1, 'default', CURRENT_TIMESTAMP)")
    if op.get_bind().dialect.name == 'postgresql':  # the id was given: the sequence must start past it
        op.execute("SELECT setval(pg_get_serial_sequence('project', 'id'), 1)")
    _people_tables()
    if op.get_bind().dialect.name == 'sqlite':
        _owned_sqlite()
        return
    for table in OWNED:
        with op.batch_alter_table(table, schema=None, recreate='auto',
                                  table_kwargs=AUTOINCREMENT.get(table, {})) as batch_op:
            batch_op.add_column(sa.Column('project_id', sa.Integer(), server_default='1', nullable=False))
            batch_op.create_index(batch_op.f(f'ix_{table}_project_id'), ['project_id'], unique=False)
            batch_op.create_foreign_key(batch_op.f(f'fk_{table}_project_id_project'), 'project',
                                        ['project_id'], ['id'])
            if table == 'run':
                batch_op.add_column(sa.Column('launched_by', sa.Integer(), nullable=True))
                batch_op.create_foreign_key(batch_op.f('fk_run_launched_by_person'), 'person',
                                            ['launched_by'], ['id'], ondelete='SET NULL')


def _add_foreign_keys(table: str, clauses: list[str]) -> None:
    """SQLite: add table-level foreign keys to a table's stored CREATE TABLE text (SQLite's documented way for a
    change that leaves every row as it is on disk: writable_schema and a new schema_version), so the schema reads
    exactly as batch mode's copy of the table would, without copying a million rows."""
    conn = op.get_bind()
    sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).scalar()
    body = sql.rstrip()
    assert body.endswith(')'), sql
    new = body[:-1].rstrip() + ''.join(f', \n\t{c}' for c in clauses) + '\n)'
    version = conn.exec_driver_sql("PRAGMA schema_version").scalar()
    conn.exec_driver_sql("PRAGMA writable_schema = ON")
    conn.exec_driver_sql("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?", (new, table))
    conn.exec_driver_sql(f"PRAGMA schema_version = {version + 1}")  # every connection re-reads the schema
    conn.exec_driver_sql("PRAGMA writable_schema = OFF")


def _owned_sqlite() -> None:
    """SQLite: the same columns, foreign keys and indexes through ALTER TABLE ADD COLUMN (the rows are not copied;
    batch mode would rebuild `run` and every one of its indexes, minutes at a million runs)."""
    for table in OWNED:
        op.add_column(table, sa.Column('project_id', sa.Integer(), server_default='1', nullable=False))
        fks = [f'CONSTRAINT fk_{table}_project_id_project FOREIGN KEY(project_id) REFERENCES project (id)']
        if table == 'run':
            op.add_column(table, sa.Column('launched_by', sa.Integer(), nullable=True))
            fks.append('CONSTRAINT fk_run_launched_by_person FOREIGN KEY(launched_by) REFERENCES person (id) '
                       'ON DELETE SET NULL')
        _add_foreign_keys(table, fks)
        op.create_index(op.f(f'ix_{table}_project_id'), table, ['project_id'], unique=False)


def downgrade() -> None:
    """Drop project_id and launched_by, then the people tables and the projects."""
    for table in reversed(OWNED):
        with op.batch_alter_table(table, schema=None, recreate='auto',
                                  table_kwargs=AUTOINCREMENT.get(table, {})) as batch_op:
            if table == 'run':
                batch_op.drop_constraint(batch_op.f('fk_run_launched_by_person'), type_='foreignkey')
                batch_op.drop_column('launched_by')
            batch_op.drop_constraint(batch_op.f(f'fk_{table}_project_id_project'), type_='foreignkey')
            batch_op.drop_index(batch_op.f(f'ix_{table}_project_id'))
            batch_op.drop_column('project_id')
    for table in ('access_generation', 'audit', 'membership', 'api_token', 'person', 'project'):
        op.drop_table(table)
