"""auto_certs and the apps' HTTPS settings

Automatic HTTPS (issue 19): one row per hostname with a certificate from the ACME CA and its
order in flight; each app's acme_enabled, https_redirect and hsts_max_age.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auto_certs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("hostname", sa.String(length=253), nullable=False),
        sa.Column("step", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("next_try_at", sa.Double(), nullable=False),
        sa.Column("order_url", sa.Text(), nullable=False),
        sa.Column("authz_url", sa.Text(), nullable=False),
        sa.Column("challenge_url", sa.Text(), nullable=False),
        sa.Column("token", sa.String(length=128), nullable=False),
        sa.Column("key_authorization", sa.Text(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("step_at", sa.Double(), nullable=False),
        sa.Column("order_key_pem", sa.Text(), nullable=False),
        sa.Column("cert_pem", sa.Text(), nullable=False),
        sa.Column("key_pem", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("issued_at", sa.Double(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["apps.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("hostname"),
    )
    with op.batch_alter_table("apps") as batch:
        batch.add_column(sa.Column("acme_enabled", sa.Boolean(), nullable=False,
                                   server_default=sa.true()))
        batch.add_column(sa.Column("https_redirect", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("hsts_max_age", sa.Integer(), nullable=False,
                                   server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("apps") as batch:
        batch.drop_column("hsts_max_age")
        batch.drop_column("https_redirect")
        batch.drop_column("acme_enabled")
    op.drop_table("auto_certs")
