"""The Alembic migrations build exactly the tables the code declares (orchestrator/db/tables.py), on
SQLite and on PostgreSQL: a column, index, constraint or type added to one and not the other fails here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, Table, Text
from sqlalchemy.engine import Connection

from orchestrator.db.engine import create_engine
from orchestrator.db.migrate import upgrade_async
from orchestrator.db.tables import metadata
from orchestrator.dev import scratch_postgres


def _differences(conn: Connection, target: MetaData) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True, "render_as_batch": True})
    return [d for d in compare_metadata(context, target) if not _alembic_own(d)]


def _alembic_own(difference: Any) -> bool:
    """Alembic's version table is in the database and, rightly, not in the models."""
    return difference[0] == "remove_table" and difference[1].name == "alembic_version"


async def _compare(url: str, target: MetaData = metadata) -> list[Any]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_differences, target)
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def migrated(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'migrated.db'}"
        await upgrade_async(url)
        yield url
    else:
        async with scratch_postgres() as url:
            yield url


async def test_the_migrated_database_has_exactly_the_declared_tables(migrated: str) -> None:
    assert await _compare(migrated) == []


async def test_the_comparison_sees_a_column_the_migrations_do_not_make(migrated: str) -> None:
    """The check above can fail: a model with one column more than the migrations is a difference."""
    extended = MetaData()
    for table in metadata.tables.values():
        table.to_metadata(extended)
    Table("jobs", extended, Column("invented", Text), extend_existing=True)
    Table("invented_table", extended, Column("id", Integer, primary_key=True))
    found = {(d[0], getattr(d[-1], "name", None)) for d in await _compare(migrated, extended)}
    assert ("add_column", "invented") in found
    assert ("add_table", "invented_table") in found
