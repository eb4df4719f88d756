"""Group commit: the writes of every job in this process go to the database in shared transactions.

Executors submit their writes without waiting; one loop commits whatever has piled up in one
transaction (in submission order), then wakes the event listeners. A batch that fails is retried
write by write, so one fenced or broken write fails only its own submitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import Connection, Engine, Executable, select
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.db import tables as t
from orchestrator.db.engine import create_sqlite_sync_engine, reading, writing
from orchestrator.errors import InvalidTransition
from orchestrator.events import Pending, append_sync, publish

log = logging.getLogger(__name__)

#: A write: a plain function of a synchronous connection, run inside the batch's transaction;
#: the events it appends to its second argument are stored after those of earlier writes.
Op = Callable[[Connection, list[Pending]], Any]
#: A write as a prepared statement and its parameters; the same statement across a batch is one executemany.
Statement = tuple[Executable, dict[str, Any]]


@dataclass
class Fence:
    """Shared by the writes of one job run: once a write is refused (the job was cancelled or taken
    over before the run's claim committed), or the job has a newer attempt than the run's (the run
    was taken over while its worker was stalled), every later write of that run is skipped."""

    attempt: int | None = None
    broken: bool = False


@dataclass
class Write:
    job_id: str
    ops: list[Op] = field(default_factory=list)
    events: list[Pending] = field(default_factory=list)
    done: asyncio.Future[Any] | None = None
    fence: Fence | None = None
    statements: list[Statement] = field(default_factory=list)

    def apply(self, conn: Connection) -> tuple[Any, list[Pending]]:
        """Run the functions; return the last one's result and the write's events (its own and theirs)."""
        result, events = None, list(self.events)
        try:
            for op in self.ops:
                result = op(conn, events)
        except InvalidTransition:
            if self.fence is None:
                raise
            self.fence.broken = True
            raise
        return result, events

    @property
    def skipped(self) -> bool:
        return self.fence is not None and self.fence.broken


class Committer:
    def __init__(self, engine: AsyncEngine, redis: Redis, max_batch: int = 200) -> None:
        self._engine = engine
        self._sqlite: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._reader: Engine | None = None
        self._reading: Connection | None = None  # the reader's one connection, kept open
        if engine.dialect.name == "sqlite":
            url = str(engine.url.render_as_string(hide_password=False))
            self._sqlite = create_sqlite_sync_engine(url)
            self._reader = create_sqlite_sync_engine(url)
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="committer")
        self._redis = redis
        self._queue: asyncio.Queue[Write] = asyncio.Queue()
        self._max_batch = max_batch
        self._task: asyncio.Task[None] | None = None
        self.commits = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="committer")

    async def stop(self) -> None:
        await self._queue.join()
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._thread is not None and self._sqlite is not None:
            self._thread.shutdown()
            self._sqlite.dispose()
        if self._reading is not None:
            self._reading.close()
        if self._reader is not None:
            self._reader.dispose()

    async def read(self, fn: Callable[[Connection], Any], snapshot: bool = False) -> Any:
        """A small read. On SQLite it runs right here on the loop: a primary-key lookup costs less
        than the thread hops of aiosqlite, and in WAL mode readers never wait for the writer. There
        each statement is its own SQLite transaction (no BEGIN and COMMIT around a lookup), so `fn`
        must consume its results; with `snapshot`, its statements read one snapshot instead."""
        if self._reader is not None and not snapshot:
            if self._reading is None:  # orchestrator/db/engine.py: no BEGIN with autocommit_read
                self._reading = self._reader.connect().execution_options(autocommit_read=True)
            try:
                return fn(self._reading)
            finally:
                self._reading.rollback()  # ends SQLAlchemy's transaction; SQLite's own ended with the statement
        async with reading(self._engine) as conn:
            return await conn.run_sync(fn)

    def submit(self, write: Write) -> asyncio.Future[Any]:
        write.done = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(write)
        return write.done

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < self._max_batch:
                batch.append(self._queue.get_nowait())
            try:
                await self._commit(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit(self, batch: list[Write]) -> None:
        try:
            results = await self._transaction(batch)
        except Exception:  # noqa: BLE001 - retry one by one so only the broken write fails
            results = [await self._alone(write) for write in batch]
        else:
            results = [(True, r) for r in results]
        await publish(self._redis, [w.job_id for w, (ok, _) in zip(batch, results, strict=True) if ok])
        for write, (ok, result) in zip(batch, results, strict=True):
            if write.done is None or write.done.done():
                continue
            if ok:
                write.done.set_result(result)
            else:
                write.done.set_exception(result)

    async def _transaction(self, batch: list[Write]) -> list[Any]:
        for attempt in range(5):
            try:
                results = await self._run_batch(batch)
                self.commits += 1
                return results
            except Exception as exc:
                if not _transient(exc) or attempt == 4:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    async def _run_batch(self, batch: list[Write]) -> list[Any]:
        if self._sqlite is not None:
            engine = self._sqlite
            return await asyncio.get_running_loop().run_in_executor(self._thread, _apply_all, engine, batch)
        async with writing(self._engine) as conn:
            return await conn.run_sync(_apply_batch, batch)

    async def _alone(self, write: Write) -> tuple[bool, Any]:
        try:
            return True, (await self._transaction([write]))[0]
        except Exception as exc:  # noqa: BLE001 - handed to the submitter
            return False, exc


def _apply_batch(conn: Connection, batch: list[Write]) -> list[Any]:
    """Functions first, in order; then each prepared statement once for all its parameter sets
    (a job's statements keep their order); then every event in one insert."""
    _fence_stale(conn, batch)
    applied = {id(write): write.apply(conn) for write in batch if not write.skipped}
    live = [write for write in batch if not write.skipped]
    groups: dict[int, tuple[Executable, list[dict[str, Any]]]] = {}
    for write in live:
        for statement, params in write.statements:
            groups.setdefault(id(statement), (statement, []))[1].append(params)
    for statement, param_sets in groups.values():
        conn.execute(statement, param_sets)
    append_sync(conn, [event for write in live for event in applied[id(write)][1]])
    return [applied[id(write)][0] if id(write) in applied else None for write in batch]


def _fence_stale(conn: Connection, batch: list[Write]) -> None:
    """Break the fence of every run whose job has moved on to a newer attempt (one query per batch)."""
    fenced = {w.job_id: w.fence for w in batch if w.fence is not None and w.fence.attempt is not None}
    if not fenced:
        return
    rows = conn.execute(select(t.jobs.c.id, t.jobs.c.attempt).where(t.jobs.c.id.in_(list(fenced)))).all()
    for row in rows:
        fence = fenced[row.id]
        if fence is not None and fence.attempt is not None and row.attempt > fence.attempt:
            fence.broken = True


def _apply_all(engine: Engine, batch: list[Write]) -> list[Any]:
    with engine.connect() as conn:
        conn = conn.execution_options(write=True)
        with conn.begin():
            return _apply_batch(conn, batch)


def _transient(exc: Exception) -> bool:
    text = str(exc).lower()
    return "database is locked" in text or "deadlock" in text or "could not serialize" in text
