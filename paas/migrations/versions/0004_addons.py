"""addons and addon_attachments

An add-on (a Postgres or Redis server of an app's, on one node) and the apps it is attached
to (each as NAME, its config var NAME_URL, at a reserved address on that app's network).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 09:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "addons",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("service", sa.String(length=32), nullable=False),
        sa.Column("plan", sa.String(length=32), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=True),
        sa.Column("app_name", sa.String(length=30), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("node", sa.String(length=63), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=63), nullable=False),
        sa.Column("password", sa.String(length=128), nullable=False),
        sa.Column("database", sa.String(length=63), nullable=False),
        sa.Column("superuser_password", sa.String(length=128), nullable=False),
        sa.Column("memory_mb", sa.Double(), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=True),
        sa.Column("created_by", sa.String(length=254), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("destroyed_at", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("number"),
    )
    op.create_table(
        "addon_attachments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("addon_id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("address_index", sa.Integer(), nullable=False),
        sa.Column("config_pending", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=254), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["addon_id"], ["addons.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("addon_id", "app_id"),
        sa.UniqueConstraint("app_id", "address_index"),
        sa.UniqueConstraint("app_id", "name"),
    )


def downgrade() -> None:
    op.drop_table("addon_attachments")
    op.drop_table("addons")
