"""owners, disabled users, an audit log that outlives its jobs

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 01:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

#: Names the unnamed foreign key of audit.job_id so SQLite's batch mode can drop it (PostgreSQL named it).
NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        # the human who owns the job (who started it, or owns the token, hook, schedule or parent that did)
        batch_op.add_column(sa.Column('owner', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        # keys are stored scoped by their caller ("scope|key"), so they need room for the scope
        batch_op.alter_column('idempotency_key', existing_type=sa.String(length=200), type_=sa.String(length=400))
        # a reported run's name is SOURCE/PROCESS, a name space of its own beside the runbooks
        batch_op.alter_column('runbook', existing_type=sa.String(length=100), type_=sa.String(length=200))
    for table in ('api_tokens', 'hooks', 'schedules'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('owner', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
    # What was known before: a job, hook or schedule made by a signed-in user names that user (a
    # token's or a hook's name, `token:...`/`hook:...`, names no person and stays so): self-approval
    # keeps holding for the jobs waiting at the upgrade.
    for table in ('jobs', 'hooks', 'schedules'):
        op.execute(
            f"UPDATE {table} SET owner = created_by WHERE owner IS NULL AND created_by IS NOT NULL"
            " AND created_by NOT LIKE '%:%' AND created_by <> 'runbook file'"
        )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True))
    # the audit log is append-only: deleting a job keeps its entries (and adds one saying so)
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_constraint('audit_job_id_fkey', 'audit', type_='foreignkey')
    else:
        with op.batch_alter_table('audit', schema=None, naming_convention=NAMING) as batch_op:
            batch_op.drop_constraint('fk_audit_job_id_jobs', type_='foreignkey')


def downgrade() -> None:
    # the foreign key comes back under the name upgrade() drops: PostgreSQL's own, or NAMING's
    name = 'audit_job_id_fkey' if op.get_bind().dialect.name == 'postgresql' else 'fk_audit_job_id_jobs'
    with op.batch_alter_table('audit', schema=None) as batch_op:
        batch_op.create_foreign_key(name, 'jobs', ['job_id'], ['id'])
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('disabled_at')
    for table in ('schedules', 'hooks', 'api_tokens'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('owner')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.alter_column('runbook', existing_type=sa.String(length=200), type_=sa.String(length=100))
        batch_op.alter_column('idempotency_key', existing_type=sa.String(length=400), type_=sa.String(length=200))
        batch_op.drop_column('owner')
