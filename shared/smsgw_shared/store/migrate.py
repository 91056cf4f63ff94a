"""Alembic migrations, run programmatically (`smsgw migrate`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

from smsgw_shared.config import to_asyncpg_url
from smsgw_shared.store.db import ensure_database

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic config pointing at our migrations and the given database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", to_asyncpg_url(database_url).replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Create the database if missing, then migrate it up to `revision`."""
    asyncio.run(ensure_database(database_url))
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    """Migrate down to `revision`."""
    command.downgrade(alembic_config(database_url), revision)


async def upgrade_async(database_url: str, revision: str = "head") -> None:
    """`upgrade` from async code (Alembic's env runs its own event loop in a thread)."""
    await ensure_database(database_url)
    await asyncio.to_thread(command.upgrade, alembic_config(database_url), revision)
