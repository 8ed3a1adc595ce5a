"""Alembic, driven from code: upgrade, downgrade, revisions, and the models/migrations check.

Alembic's async ``env.py`` calls ``asyncio.run``; call these from synchronous code (a click
command, the stack supervisor), never from inside a running event loop.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

import migrations
from services.ops.connections import connection

MIGRATIONS_DIR = Path(migrations.__file__).parent


def alembic_config(dsn: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    # ConfigParser interpolation: a literal % in the DSN (an escaped password) must be doubled.
    config.set_main_option("sqlalchemy.url", dsn.replace("%", "%%"))
    return config


def upgrade(dsn: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(dsn), revision)


def downgrade(dsn: str, revision: str) -> None:
    command.downgrade(alembic_config(dsn), revision)


def check(dsn: str) -> None:
    """Raise unless the models and the migrations at head describe the same schema."""
    command.check(alembic_config(dsn))


def head_revision() -> str | None:
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


async def current_revision(dsn: str) -> str | None:
    async with connection(dsn) as conn:
        if not await conn.fetchval("SELECT to_regclass('public.alembic_version') IS NOT NULL"):
            return None
        revision: str | None = await conn.fetchval("SELECT version_num FROM alembic_version")
        return revision


def current_revision_sync(dsn: str) -> str | None:
    return asyncio.run(current_revision(dsn))
