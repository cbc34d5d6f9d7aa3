"""Alembic migrations of the platform's database; paas/schema.py applies them on start."""
