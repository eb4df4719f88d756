"""Engine and transactions. Writes on SQLite take the write lock up front (BEGIN IMMEDIATE).
On PostgreSQL a worker's small reads have an engine of their own (`create_reader_engine`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=30000",
    "PRAGMA foreign_keys=ON",
)


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)
        _sqlite_transactions(engine.sync_engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


def create_reader_engine(url: str, size: int) -> AsyncEngine:
    """At most `size` PostgreSQL connections for a worker's small reads (worker/committer.py
    `Committer.read`): autocommit, so a lookup is one round trip. SQLAlchemy's transaction is a
    BEGIN and a COMMIT more, and its pre-ping three (asyncpg's ping runs in a transaction of its
    own); without it, a read that finds its connection dead after a server restart is read again
    by the caller."""
    return create_async_engine(url, isolation_level="AUTOCOMMIT", pool_size=size, max_overflow=0)


def create_sqlite_sync_engine(url: str) -> Engine:
    """A plain pysqlite engine for one writer thread: a whole batch of writes costs one thread hop,
    where aiosqlite costs several per statement."""
    engine = sa_create_engine(
        url.replace("+aiosqlite", ""), connect_args={"timeout": 30, "check_same_thread": False}, poolclass=StaticPool
    )
    _sqlite_transactions(engine)
    return engine


def _sqlite_transactions(engine: Engine) -> None:
    """Let SQLAlchemy, not the driver, begin transactions, so writes can BEGIN IMMEDIATE.

    pysqlite's own deferred BEGIN makes a read that turns into a write fail with
    "database is locked" under concurrency instead of waiting for busy_timeout.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        options = conn.get_execution_options()
        if options.get("autocommit_read"):  # each statement is its own transaction (Committer.read)
            return
        conn.exec_driver_sql(f"BEGIN {'IMMEDIATE' if options.get('write') else 'DEFERRED'}")


@asynccontextmanager
async def writing(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A write transaction: committed on success, rolled back on error."""
    async with engine.connect() as conn:
        conn = await conn.execution_options(write=True)
        async with conn.begin():
            yield conn


@asynccontextmanager
async def reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn, conn.begin():
        yield conn
