"""nodes, assignments and dynos.node

Nodes register with the API; each desired dyno key and live one-off is assigned to one; each
dyno row says which node reports it (NULL for rows reported before nodes: the next report of
any node replaces them).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 20:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("memory_mb", sa.Integer(), nullable=False),
        sa.Column("backend", sa.String(length=32), nullable=False),
        sa.Column("dyno_subnet", sa.String(length=43), nullable=False),
        sa.Column("registered_at", sa.Double(), nullable=False),
        sa.Column("heartbeat_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=63), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("oneoff", sa.Boolean(), nullable=False),
        sa.Column("node", sa.String(length=63), nullable=True),
        sa.Column("memory_mb", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("app_id", "type", "index", "oneoff"),
    )
    with op.batch_alter_table("dynos") as batch:
        batch.add_column(sa.Column("node", sa.String(length=63), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dynos") as batch:
        batch.drop_column("node")
    op.drop_table("assignments")
    op.drop_table("nodes")
