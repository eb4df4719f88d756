"""One event type: appended to job_events (its row id is the SSE id), then announced through Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from redis.asyncio import Redis
from sqlalchemy import insert, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.db import driver
from orchestrator.db import tables as t
from orchestrator.db.tables import utcnow
from orchestrator.keys import EVENTS_CHANNEL, FRAMES_CHANNEL

log = logging.getLogger(__name__)

EventType = Literal["snapshot", "status", "step", "screenshot", "approval", "log", "report"]
#: The events the all-jobs stream carries (`approval`: a request, or a vote on one, for the inbox).
GLOBAL_TYPES = ("status", "report", "approval")


@dataclass(frozen=True)
class Event:
    id: int
    job_id: str
    type: str
    data: dict[str, Any]
    created_at: datetime


@dataclass
class Pending:
    """An event to append in the current write transaction."""

    job_id: str
    type: str
    data: dict[str, Any]


def status_event(job_id: str, status: str, previous: str | None, at: datetime) -> Pending:
    """A `status` event: the job moved from `previous` (None: it was just made) to `status` at `at`.
    orchestrator/transitions.py appends one with every move."""
    return Pending(job_id, "status", {"job_id": job_id, "status": status, "previous": previous, "at": at.isoformat()})


async def append(conn: AsyncConnection, pending: Sequence[Pending]) -> None:
    if pending:
        await conn.run_sync(append_sync, pending)


def append_sync(conn: Connection, pending: Sequence[Pending]) -> None:
    """Append events in one statement. On PostgreSQL a transaction lock keeps id order = commit order,
    so a reader that saw id N never later finds a smaller id committed (SQLite has one writer anyway)."""
    if not pending:
        return
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(727274)"))
    now = utcnow()
    driver.executemany(
        conn, INSERT_EVENT, [{"job_id": p.job_id, "type": p.type, "data": p.data, "created_at": now} for p in pending]
    )


INSERT_EVENT = insert(t.events)


async def publish(redis: Redis, job_ids: Iterable[str]) -> None:
    """Wake listeners of these jobs. Best effort: readers also poll, so a lost wake-up only delays."""
    ids = sorted(set(job_ids))
    if not ids:
        return
    try:
        await redis.publish(EVENTS_CHANNEL, json.dumps(ids))
    except Exception as exc:  # noqa: BLE001 - Redis down must not fail a committed write
        log.warning("could not announce events for %s: %s", ids, exc)


async def read_after(
    conn: AsyncConnection, after: int, job_id: str | None = None, types: Sequence[str] | None = None, limit: int = 500
) -> list[Event]:
    query = select(t.events).where(t.events.c.id > after).order_by(t.events.c.id).limit(limit)
    if job_id is not None:
        query = query.where(t.events.c.job_id == job_id)
    if types:
        query = query.where(t.events.c.type.in_(types))
    rows = (await conn.execute(query)).mappings().all()
    return [Event(r["id"], r["job_id"], r["type"], r["data"], r["created_at"]) for r in rows]


async def resume_point(
    conn: AsyncConnection, after: int, limit: int, job_id: str | None = None, types: Sequence[str] | None = None
) -> int | None:
    """None when at most `limit` events (of this job, of these types) came after `after`: a client that
    saw `after` is replayed all it missed. Else the id after which the newest `limit` of them start."""
    query = select(t.events.c.id).where(t.events.c.id > after).order_by(t.events.c.id.desc())
    if job_id is not None:
        query = query.where(t.events.c.job_id == job_id)
    if types:
        query = query.where(t.events.c.type.in_(types))
    return (await conn.execute(query.offset(limit).limit(1))).scalar()


async def last_id(conn: AsyncConnection, job_id: str | None = None) -> int:
    query = select(t.events.c.id).order_by(t.events.c.id.desc()).limit(1)
    if job_id is not None:
        query = query.where(t.events.c.job_id == job_id)
    return (await conn.execute(query)).scalar() or 0


class Subscription:
    def __init__(self, frames: bool = False) -> None:
        self.flag = asyncio.Event()
        self.frames = frames
        #: Whether events were announced since the last `take_news`; the latest live frame not yet
        #: sent; whether a heartbeat came since the last `take_beat`.
        self.news = True
        self.frame: dict[str, Any] | None = None
        self.beat = False

    def announce(self) -> None:
        self.news = True
        self.flag.set()

    def show(self, frame: dict[str, Any]) -> None:
        self.frame = frame
        self.flag.set()

    def ring(self) -> None:
        self.beat = True
        self.flag.set()

    def take_news(self) -> bool:
        news, self.news = self.news, False
        return news

    def take_frame(self) -> dict[str, Any] | None:
        frame, self.frame = self.frame, None
        return frame

    def take_beat(self) -> bool:
        beat, self.beat = self.beat, False
        return beat

    async def wait(self, seconds: float | None = None) -> bool:
        """True when there was news (or a frame or a heartbeat) since the last wait, False after
        `seconds` without. Without `seconds` no timer is armed: a thousand idle streams cost nothing."""
        try:
            if seconds is None:
                await self.flag.wait()
                return True
            async with asyncio.timeout(seconds):
                await self.flag.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self.flag.clear()


class Hub:
    """One Redis subscription per process, fanned out to in-process waiters by job id. With
    `heartbeat_s`, every waiter is rung that often (one timer for all, not one per waiter)."""

    def __init__(self, redis: Redis, heartbeat_s: float | None = None) -> None:
        self._redis = redis
        self._heartbeat_s = heartbeat_s
        #: Waiters by job id; None: of any job; or a key of another fan-out's own, woken by `wake`.
        self._waiters: dict[Hashable, set[Subscription]] = defaultdict(set)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._listen(), name="event-hub"))
        if self._heartbeat_s:
            self._tasks.append(asyncio.create_task(self._beat(self._heartbeat_s), name="event-hub-heartbeat"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @contextlib.contextmanager
    def subscribe(self, job_id: Hashable, frames: bool = False) -> Iterator[Subscription]:
        """News of one job (None: of any job) while the block runs; nothing is missed between waits.
        With `frames`, the job's live frames too (the latest one; older ones are dropped)."""
        subscription = Subscription(frames)
        self._waiters[job_id].add(subscription)
        try:
            yield subscription
        finally:
            self._waiters[job_id].discard(subscription)
            if not self._waiters[job_id]:
                self._waiters.pop(job_id, None)

    def wake(self, key: Hashable) -> None:
        for subscription in self._waiters.get(key, ()):
            subscription.announce()

    def _wake(self, job_ids: list[str]) -> None:
        for key in (None, *job_ids):
            self.wake(key)

    def _wake_all(self) -> None:
        """After a lost subscription: every waiter reads again what it may have missed."""
        for key in list(self._waiters):
            self.wake(key)

    def _frame(self, note: dict[str, Any]) -> None:
        for subscription in self._waiters.get(note.get("job_id"), ()):
            if subscription.frames:
                subscription.show(note)

    async def _beat(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            for subscriptions in list(self._waiters.values()):
                for subscription in subscriptions:
                    subscription.ring()

    async def _listen(self) -> None:
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(EVENTS_CHANNEL, FRAMES_CHANNEL)
                    self._wake_all()  # (re)connected: let everyone re-read what they may have missed
                    async for message in pubsub.listen():
                        if message["type"] != "message":
                            continue
                        if message["channel"] in (FRAMES_CHANNEL, FRAMES_CHANNEL.encode()):
                            self._frame(json.loads(message["data"]))
                        else:
                            self._wake(json.loads(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect after Redis restarts
                log.warning("event hub lost Redis (%s); reconnecting", exc)
                self._wake_all()
                await asyncio.sleep(1)
