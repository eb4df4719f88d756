"""Group commit: the writes of every job in this process go to the database in shared transactions.

Executors submit their writes without waiting; one loop commits whatever has piled up in one
transaction (in submission order), then wakes the event listeners. A batch that fails is retried
write by write, so one fenced or broken write fails only its own submitter.

The transactions run in a writer process of their own: there they use the second core instead of
taking turns with the event loop for the GIL (in a thread, the committer's Python work and the
loop's added up: measured in bench/, 260 against 500 jobs/s of three steps). Writes travel to it as
plain data: ops are module-level dataclasses, statements go by their `prepared` key. On PostgreSQL
the writer runs asyncpg on an event loop of its own: there each statement is a round trip, which
on the worker's busy loop waited a whole turn of it (a job's claim and end took 2 ms each), so a
batch makes the moves of its runs together (worker/ops.py `plan`, transitions.make_all): a few
round trips a batch, whatever its size.

Reads (`read`) run on the worker's loop: on SQLite on a connection of its own, on PostgreSQL on
autocommit connections of their own (one round trip a statement: no BEGIN, COMMIT or ping).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import importlib
import itertools
import logging
import multiprocessing
import pickle
import signal
import socket
import struct
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from typing import Any, TypeVar

from redis.asyncio import Redis
from sqlalchemy import Connection, Engine, Executable
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orchestrator.db import driver
from orchestrator.db.engine import create_engine, create_reader_engine, create_sqlite_sync_engine, writing
from orchestrator.errors import InvalidTransition
from orchestrator.events import Pending, append_sync, publish
from orchestrator.transitions import Planned, make_all, stale_runs

log = logging.getLogger(__name__)

#: A write: a plain function of a synchronous connection, run inside the batch's transaction;
#: the events it appends to its second argument are stored after those of earlier writes.
Op = Callable[[Connection, list[Pending]], Any]
#: A write as a prepared statement and its parameters; the same statement across a batch is one executemany.
Statement = tuple[Executable, dict[str, Any]]
E = TypeVar("E", bound=Executable)

#: Prepared statements by key ("module.NAME"), and each one's key by its id.
_PREPARED: dict[str, Executable] = {}
_KEYS: dict[int, str] = {}
_fence_keys = itertools.count(1)
#: Writes waiting for the committer beyond which finishing runs wait for theirs (Committer.behind).
BEHIND = 1000


def prepared(key: str, statement: E) -> E:
    """A statement writes may use, registered under `key` ("module.NAME") so that the writer
    process finds its own copy (it imports the module)."""
    _PREPARED[key] = statement
    _KEYS[id(statement)] = key
    return statement


def _key(statement: Executable) -> str:
    key = _KEYS.get(id(statement))
    if key is None:
        raise LookupError(f"A write used a statement not made with prepared(): {statement}")
    return key


def _statement(key: str) -> Executable:
    if key not in _PREPARED:
        importlib.import_module(key.rpartition(".")[0])
    return _PREPARED[key]


@dataclass
class Fence:
    """Shared by the writes of one job run: once a write is refused (the job was cancelled or taken
    over before the run's claim committed), or the job has a newer attempt than the run's (the run
    was taken over while its worker was stalled), every later write of that run is skipped."""

    attempt: int | None = None
    broken: bool = False
    key: int = field(default_factory=lambda: next(_fence_keys))


@dataclass
class Write:
    job_id: str
    ops: list[Op] = field(default_factory=list)
    events: list[Pending] = field(default_factory=list)
    done: asyncio.Future[Any] | None = None
    fence: Fence | None = None
    statements: list[Statement] = field(default_factory=list)
    taken: bool = False  # the committer has taken it: nothing more may join it

    def run(self, conn: Connection, op: Op, events: list[Pending]) -> Any:
        """One of its functions, whole; a refused move breaks the run's fence."""
        try:
            return op(conn, events)
        except InvalidTransition:
            if self.fence is not None:
                self.fence.broken = True
            raise

    @property
    def skipped(self) -> bool:
        return self.fence is not None and self.fence.broken

    def wire(self) -> tuple[Any, ...]:
        """The write as plain data for the writer process."""
        fence = self.fence and (self.fence.key, self.fence.attempt, self.fence.broken)
        statements = [(_key(statement), params) for statement, params in self.statements]
        events = [(event.job_id, event.type, event.data) for event in self.events]
        return self.job_id, self.ops, events, statements, fence


class Committer:
    def __init__(self, engine: AsyncEngine, redis: Redis, max_batch: int = 200) -> None:
        self._engine = engine
        self._url = str(engine.url.render_as_string(hide_password=False))
        self._writer = _Writer(self._url)
        self._reader: Engine | None = None  # SQLite
        self._reading: Connection | None = None  # the reader's one connection, kept open
        self._readers: _Readers | None = None  # PostgreSQL
        if engine.dialect.name == "sqlite":
            self._reader = create_sqlite_sync_engine(self._url)
        else:
            self._readers = _Readers(self._url)
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
        await self._writer.close()
        if self._reading is not None:
            self._reading.close()
        if self._reader is not None:
            self._reader.dispose()
        if self._readers is not None:
            await self._readers.close()

    async def read(self, fn: Callable[[Connection], Any], snapshot: bool = False) -> Any:
        """A small read. Each statement is its own transaction (no BEGIN and COMMIT around a
        lookup), so `fn` must consume its results; with `snapshot`, its statements read one
        snapshot instead. On SQLite it runs right here on the loop: a primary-key lookup costs less
        than the thread hops of aiosqlite, and in WAL mode readers never wait for the writer."""
        if snapshot:
            async with self._engine.connect() as conn:
                if self._readers is not None:  # PostgreSQL's default, READ COMMITTED, reads a snapshot a statement
                    conn = await conn.execution_options(isolation_level="REPEATABLE READ")
                async with conn.begin():
                    return await conn.run_sync(fn)
        if self._reader is not None:
            return self._read_sqlite(self._reader, fn)
        assert self._readers is not None
        return await self._readers.read(fn)

    def _read_sqlite(self, reader: Engine, fn: Callable[[Connection], Any]) -> Any:
        if self._reading is None:  # orchestrator/db/engine.py: no BEGIN with autocommit_read
            self._reading = reader.connect().execution_options(autocommit_read=True)
        try:
            return fn(self._reading)
        finally:
            self._reading.rollback()  # ends SQLAlchemy's transaction; SQLite's own ended with the statement

    @property
    def behind(self) -> bool:
        """Whether the writes waiting to be committed are more than a few batches' worth."""
        return self._queue.qsize() > BEHIND

    def submit(self, write: Write) -> asyncio.Future[Any]:
        write.done = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(write)
        return write.done

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < self._max_batch:
                batch.append(self._queue.get_nowait())
            for write in batch:
                write.taken = True
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
        try:
            error, results, broken = await self._writer.call([write.wire() for write in batch])
        except WriterGone:  # killed: start another; the writes are retried one by one
            log.error("the database writer process died; starting another")
            await self._writer.close()
            self._writer = _Writer(self._url)
            raise
        for write in batch:
            if write.fence is not None and write.fence.key in broken:
                write.fence.broken = True
        if error is not None:
            raise error
        assert results is not None  # the writer answers results or an error
        return results

    async def _alone(self, write: Write) -> tuple[bool, Any]:
        try:
            return True, (await self._transaction([write]))[0]
        except Exception as exc:  # noqa: BLE001 - handed to the submitter
            return False, exc


class _Readers:
    """Autocommit PostgreSQL connections kept open for reads, at most `size`, each for one read at a
    time: a checkout from SQLAlchemy's pool cost as much CPU as the read itself (bench/)."""

    def __init__(self, url: str, size: int = 4) -> None:
        self._engine = create_reader_engine(url, size)
        self._idle: list[AsyncConnection] = []
        self._free = asyncio.Semaphore(size)

    async def read(self, fn: Callable[[Connection], Any]) -> Any:
        async with self._free:
            for again in (False, True):
                conn = self._idle.pop() if self._idle else await self._engine.connect()
                try:
                    result = await conn.run_sync(fn)
                except BaseException as exc:
                    # its state is unknown (a read cut off, a server restarted): never used again
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close())
                    if again or not isinstance(exc, DBAPIError) or not exc.connection_invalidated:
                        raise
                    continue  # the server restarted since: read again, on a new connection
                self._idle.append(conn)
                return result
        raise AssertionError("unreachable")

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                await conn.close()
        await self._engine.dispose()


def _apply_batch(conn: Connection, batch: list[Write]) -> list[Any]:
    """Functions first, in order; then each prepared statement once for all its parameter sets
    (a job's statements keep their order); then every event in one insert."""
    _fence_stale(conn, batch)
    live = [write for write in batch if not write.skipped]
    results, events = _apply_ops(conn, live)
    groups: dict[int, tuple[Executable, list[dict[str, Any]]]] = {}
    for write in live:
        for statement, params in write.statements:
            groups.setdefault(id(statement), (statement, []))[1].append(params)
    for statement, param_sets in groups.values():
        driver.executemany(conn, statement, param_sets)
    append_sync(conn, [event for each in events for event in each])
    answers = {id(write): result for write, result in zip(live, results, strict=True)}
    return [answers.get(id(write)) for write in batch]


def _apply_ops(conn: Connection, writes: list[Write]) -> tuple[list[Any], list[list[Pending]]]:
    """The writes' functions, each job's in order: the first of every job together, then the
    second (a job's end follows its claim made in the same batch), and so on. The planned moves
    of a round are made together (transitions.make_all); a function whose move did not happen so
    runs whole. Returns each write's result (its last function's) and its events (its own first)."""
    events = [list(write.events) for write in writes]
    results: list[Any] = [None] * len(writes)
    queues: dict[str, collections.deque[tuple[int, Op]]] = {}
    for i, write in enumerate(writes):
        for op in write.ops:
            queues.setdefault(write.job_id, collections.deque()).append((i, op))
    while queues:
        heads = [queue.popleft() for queue in queues.values()]
        queues = {job_id: queue for job_id, queue in queues.items() if queue}
        plans = [(k, p) for k, (_, op) in enumerate(heads) if (p := _plan(op)) is not None]
        moved = make_all(conn, [p for _, p in plans], [events[heads[k][0]] for k, _ in plans])
        done = {k for (k, _), won in zip(plans, moved, strict=True) if won}
        for k, (i, op) in enumerate(heads):
            if k in done:
                results[i] = op.won(events[i])  # type: ignore[attr-defined]
            else:
                results[i] = writes[i].run(conn, op, events[i])
    return results, events


def _plan(op: Op) -> Planned | None:
    plan = getattr(op, "plan", None)
    return plan() if plan is not None else None


def _fence_stale(conn: Connection, batch: list[Write]) -> None:
    """Break the fence of every run whose job has moved on to a newer attempt (one query per batch)."""
    fences: dict[str, Fence] = {}
    attempts: dict[str, int] = {}
    for write in batch:
        if write.fence is not None and write.fence.attempt is not None:
            fences[write.job_id], attempts[write.job_id] = write.fence, write.fence.attempt
    for job_id in stale_runs(conn, attempts) if attempts else ():
        fences[job_id].broken = True


def _apply_all(engine: Engine, batch: list[Write]) -> list[Any]:
    with engine.connect() as conn:
        conn = conn.execution_options(write=True)
        with conn.begin():
            return _apply_batch(conn, batch)


def _postgres_applier(url: str) -> Callable[[list[Write]], list[Any]]:
    """How the writer process applies a batch on PostgreSQL: on an event loop of its own, run
    between batches, with one connection (no ping: a batch that finds it dead is applied again,
    once, on a new one)."""
    loop: asyncio.AbstractEventLoop
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    engine = create_engine(url, pool_size=1, max_overflow=0, pool_pre_ping=False)

    async def apply(batch: list[Write]) -> list[Any]:
        for again in (False, True):
            try:
                async with writing(engine) as conn:
                    results: list[Any] = await conn.run_sync(_apply_batch, batch)
                    return results
            except DBAPIError as exc:
                if again or not exc.connection_invalidated:
                    raise
        raise AssertionError("unreachable")

    return lambda batch: loop.run_until_complete(apply(batch))


def _transient(exc: Exception) -> bool:
    text = str(exc).lower()
    return "database is locked" in text or "deadlock" in text or "could not serialize" in text


# -- the writer process ------------------------------------------------------------------


class WriterGone(Exception):
    """The writer process died (killed); a new one is started, and the batch retried write by write."""


class _Writer:
    """A process holding the write connection, and a socket to it. The event loop writes a
    batch without blocking and reads the answer as a stream: no threads between them, so no
    waiting for the GIL on each hand-over (concurrent.futures' ProcessPoolExecutor passes every
    call through two threads of this process, which cost more than the writes did). The frames are
    those of multiprocessing's Connection, which the writer reads with."""

    def __init__(self, url: str) -> None:
        context = multiprocessing.get_context("forkserver")  # forked from a server with the modules loaded
        context.set_forkserver_preload([__name__, "worker.statements", "worker.ops"])
        self._socket, theirs = socket.socketpair()
        child = Pipe(theirs.detach())
        self._process = context.Process(target=_serve, args=(child, url), name="orchestrator-writer", daemon=True)
        with _without_main():
            self._process.start()
        child.close()
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def call(self, wires: list[tuple[Any, ...]]) -> tuple[Exception | None, list[Any] | None, list[int]]:
        if self._stream is None:
            self._stream = await asyncio.open_unix_connection(sock=self._socket)
        reader, writer = self._stream
        data = pickle.dumps(wires, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            writer.write(struct.pack("!i", len(data)) + data if len(data) < 2**31 - 1 else _long_frame(data))
            await writer.drain()
            (size,) = struct.unpack("!i", await reader.readexactly(4))
            if size == -1:
                (size,) = struct.unpack("!Q", await reader.readexactly(8))
            answer: tuple[Exception | None, list[Any] | None, list[int]] = pickle.loads(await reader.readexactly(size))
            return answer
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise WriterGone(f"the writer process ended ({exc})") from exc

    async def close(self) -> None:
        if self._stream is not None:
            self._stream[1].close()  # the writer sees the end of its pipe and exits
        else:
            self._socket.close()
        await asyncio.to_thread(self._process.join, 5)
        if self._process.is_alive():
            self._process.kill()


@contextlib.contextmanager
def _without_main() -> Iterator[None]:
    """multiprocessing runs the parent's main script again in each child it starts (as __mp_main__,
    unless run with -m from a package's __main__); for the `orchestrator` console script that
    imports the whole application (1.7 s of CPU). The writer needs none of it: hide it meanwhile."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _long_frame(data: bytes) -> bytes:
    return struct.pack("!i", -1) + struct.pack("!Q", len(data)) + data


def _serve(conn: Any, url: str) -> None:
    """The writer process: one batch at a time, each in one transaction, until the pipe closes
    (the worker stopped, or died)."""
    # Ctrl-C and the Procfile's TERM reach the whole process group: the worker ends the writer
    # itself, once its last writes are in.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if url.startswith("sqlite"):
        engine = create_sqlite_sync_engine(url)
        apply: Callable[[list[Write]], list[Any]] = functools.partial(_apply_all, engine)
    else:
        apply = _postgres_applier(url)
    while True:
        try:
            wires = conn.recv()
        except (EOFError, OSError):
            return
        error, results, broken = _apply_wires(apply, wires)
        try:
            conn.send((error, results, broken))
        except Exception as exc:  # noqa: BLE001 - an error or a result that cannot be pickled
            conn.send((RuntimeError(f"{type(exc).__name__}: {exc}; the write was: {error!r}"), None, broken))


def _apply_wires(
    apply: Callable[[list[Write]], list[Any]], wires: list[tuple[Any, ...]]
) -> tuple[Exception | None, list[Any] | None, list[int]]:
    """One batch in one transaction. Returns the error that rolled it back (or None), each write's
    result, and the keys of the fences broken meanwhile."""
    fences: dict[int, Fence] = {}
    batch = []
    for job_id, ops, events, statements, wired in wires:
        fence = None
        if wired is not None:
            key, attempt, broken = wired
            fence = fences.setdefault(key, Fence(attempt, broken, key))
        pending = [Pending(*event) for event in events]
        batch.append(Write(job_id, ops, pending, fence=fence, statements=[(_statement(k), p) for k, p in statements]))
    try:
        error, results = None, apply(batch)
    except Exception as exc:  # noqa: BLE001 - handed back: the committer retries write by write
        error, results = exc, None
    return error, results, [key for key, fence in fences.items() if fence.broken]
