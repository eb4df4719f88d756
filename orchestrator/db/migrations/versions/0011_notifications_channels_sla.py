"""notification channels, the notification outbox, SLA misses, event cursors; roles as lists

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 00:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        'channels',
        sa.Column('name', sa.String(length=100), primary_key=True),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('sealed', sa.Text(), nullable=False),
        sa.Column('summary', sa.String(length=400), nullable=False),
        sa.Column('created_by', sa.String(length=200), nullable=True),
        _when('created_at'),
    )
    op.create_table(
        'notifications',
        sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column('dedupe', sa.String(length=400), nullable=False, unique=True),
        sa.Column('job_id', sa.String(length=32), nullable=True, index=True),
        sa.Column('runbook', sa.String(length=200), nullable=False),
        sa.Column('event', sa.String(length=32), nullable=False),
        sa.Column('channel', sa.String(length=100), nullable=False),
        sa.Column('detail', sa.JSON(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.String(length=500), nullable=True),
        _when('next_at'),
        _when('lease_until', nullable=True),
        _when('created_at'),
        _when('sent_at', nullable=True),
    )
    op.create_index('ix_notifications_due', 'notifications', ['status', 'next_at'])
    op.create_table(
        'sla_misses',
        sa.Column('job_id', sa.String(length=32), primary_key=True),
        sa.Column('limit', sa.String(length=16), primary_key=True),
        sa.Column('seconds', sa.Float(), nullable=False),
        _when('at'),
    )
    op.create_table(
        'cursors',
        sa.Column('name', sa.String(length=32), primary_key=True),
        sa.Column('position', sa.BigInteger(), nullable=False),
    )
    # the notifier tells of what happens from the upgrade on, not of the history before it
    op.execute("INSERT INTO cursors (name, position) SELECT 'notifier', COALESCE(MAX(id), 0) FROM job_events")
    # a user or token may hold several roles, as a comma list (built-in ones and group names)
    for table in ('users', 'api_tokens'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('role', existing_type=sa.String(length=16), type_=sa.String(length=200))


def downgrade() -> None:
    for table in ('users', 'api_tokens'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('role', existing_type=sa.String(length=200), type_=sa.String(length=16))
    op.drop_table('cursors')
    op.drop_table('sla_misses')
    op.drop_index('ix_notifications_due', table_name='notifications')
    op.drop_table('notifications')
    op.drop_table('channels')
