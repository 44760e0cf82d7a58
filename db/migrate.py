"""Alembic, driven programmatically: ``fature db upgrade|downgrade|current``."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from db.engine import connect
from db.settings import plain_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class MigrationError(RuntimeError):
    """A migration was refused; nothing was changed."""


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", plain_url(url).replace("%", "%%"))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("postgresql://x@localhost/x")).get_current_head()
    if head is None:
        raise MigrationError("no migrations found (db/migrations/versions)")
    return head


async def current_revision(url: str) -> str | None:
    conn = await connect(url)
    try:
        exists = await conn.fetchval("SELECT to_regclass('public.alembic_version') IS NOT NULL")
        if not exists:
            return None
        return await conn.fetchval("SELECT version_num FROM alembic_version")
    finally:
        await conn.close()


def _check_known(url: str) -> None:
    current = asyncio.run(current_revision(url))
    script = ScriptDirectory.from_config(alembic_config(url))
    known = {rev.revision for rev in script.walk_revisions()}
    if current is not None and current not in known:
        raise MigrationError(
            f"the database is at revision {current!r}, which this version of Fature does not "
            "know (newer code migrated it?); refusing to touch it"
        )


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate up; refuses a database at an unknown revision. Call outside an event loop."""
    _check_known(url)
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    _check_known(url)
    command.downgrade(alembic_config(url), revision)
