"""Operators' tooling: ``qr-manage``, the local stack behind ``make run``, the embedded database,
migrations and backups."""
