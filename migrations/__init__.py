"""Alembic environment and versions; run through ``qr-manage migrate``."""
