"""`orchestrator db upgrade`: create or migrate the database with Alembic."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Create or migrate the database. env.py drives an event loop of its own, so inside a
    running loop the migration runs in a thread."""
    if url.startswith("sqlite"):
        _sqlite_dir(url).mkdir(parents=True, exist_ok=True)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        command.upgrade(alembic_config(url), revision)
        return
    with ThreadPoolExecutor(1) as pool:
        pool.submit(command.upgrade, alembic_config(url), revision).result()


async def upgrade_async(url: str) -> None:
    await asyncio.to_thread(upgrade, url)


def _sqlite_dir(url: str) -> Path:
    return Path(url.split(":///", 1)[1]).parent
