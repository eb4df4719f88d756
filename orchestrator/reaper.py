"""Jobs whose worker died: a running job without a lease goes back to the queue as its next attempt.

Runs in the scheduler and in every worker. A job is taken over only when its lease has been
missing for a while (one missed heartbeat after a Redis restart is not a death); after
MAX_LOST lost workers the job fails.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from arq.connections import ArqRedis
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import approvals, queue
from orchestrator.db import tables as t
from orchestrator.db.engine import reading, writing
from orchestrator.db.tables import utcnow
from orchestrator.events import Pending, append, publish
from orchestrator.keys import lease_key
from orchestrator.states import JobStatus
from orchestrator.transitions import HAND_BACK, REAP, Move, make

log = logging.getLogger(__name__)

MAX_LOST = 3
#: A lease missing this long (seconds) means the worker is gone.
CONFIRM_S = 2.0
#: How often (seconds) a reaper looks for approvals whose timeout ran out with their worker gone: each
#: look reads every waiting job, and a decision a few seconds late is on time for a person's deadline.
APPROVALS_EVERY_S = 5.0


class Reaper:
    def __init__(self, engine: AsyncEngine, pool: ArqRedis, grace: timedelta = timedelta(seconds=5)) -> None:
        self._engine = engine
        self._pool = pool
        self._grace = grace
        self._missing: dict[tuple[str, int], float] = {}
        self._approvals_at = float("-inf")

    async def sweep(self) -> int:
        """Hand back every running job whose lease has been missing for CONFIRM_S, and decide the
        approvals whose timeout ran out (their worker may be gone); return how many jobs moved."""
        decided = 0
        if time.monotonic() - self._approvals_at >= APPROVALS_EVERY_S:  # not every heartbeat of every worker
            self._approvals_at = time.monotonic()
            decided = await approvals.time_out_due(self._engine, self._pool)
        return decided + await self._take_over_lost()

    async def _take_over_lost(self) -> int:
        query = select(t.jobs.c.id, t.jobs.c.attempt, t.jobs.c.priority, t.jobs.c.checkpoint).where(
            t.jobs.c.status == JobStatus.RUNNING.value, t.jobs.c.updated_at < utcnow() - self._grace
        )
        async with reading(self._engine) as conn:
            rows = (await conn.execute(query.limit(500))).all()
        now, seen, taken = time.monotonic(), set(), 0
        for row in rows:
            key = (row.id, row.attempt)
            if await self._pool.exists(lease_key(row.id)):
                continue
            seen.add(key)
            first = self._missing.setdefault(key, now)
            if now - first >= CONFIRM_S:
                taken += await self._take_over(row.id, row.attempt, row.priority, row.checkpoint or {})
        self._missing = {k: v for k, v in self._missing.items() if k in seen}
        return taken

    async def _take_over(self, job_id: str, attempt: int, priority: str, checkpoint: dict[str, object]) -> int:
        lost = int(str(checkpoint.get("lost", 0))) + 1
        if lost >= MAX_LOST:
            message = f"The worker running this job was lost {lost} times."
            values = {"error_message": message, "summary": message, "finished_at": utcnow()}
            done = await _move_on(self._engine, self._pool, REAP, job_id, attempt, JobStatus.FAILED, values, message)
        else:
            values = {"attempt": attempt + 1, "checkpoint": {**checkpoint, "lost": lost}}
            message = f"The worker of attempt {attempt} was lost; attempt {attempt + 1} resumes."
            done = await _move_on(self._engine, self._pool, REAP, job_id, attempt, JobStatus.QUEUED, values, message)
            if done:
                await queue.enqueue(self._pool, job_id, attempt + 1, priority)
        if done:
            log.warning("job %s: worker lost (attempt %d)", job_id, attempt)
            await _forget(self._pool, job_id, attempt)
        return int(done)


async def hand_back(engine: AsyncEngine, pool: ArqRedis, job_id: str, attempt: int, priority: str) -> bool:
    """A worker that stops hands its running job back as the next attempt (no lost worker counted)."""
    message = f"The worker stopped; attempt {attempt + 1} resumes on another worker."
    values = {"attempt": attempt + 1}
    if not await _move_on(engine, pool, HAND_BACK, job_id, attempt, JobStatus.QUEUED, values, message):
        return False
    await _forget(pool, job_id, attempt)
    try:
        await queue.enqueue(pool, job_id, attempt + 1, priority)
    except (RedisError, OSError) as exc:  # queued in the database: the reconciler enqueues it later
        log.warning("job %s handed back but not enqueued (%s)", job_id, exc)
    return True


async def _forget(pool: ArqRedis, job_id: str, attempt: int) -> None:
    """The attempt that ended here leaves arq's queue at once (queue.forget); should Redis be away, its
    keys expire, and a worker that takes it meanwhile finds it fenced out and does nothing."""
    try:
        await queue.forget(pool, job_id, attempt)
    except (RedisError, OSError) as exc:
        log.warning("job %s: attempt %d stays on arq's queue until it expires (%s)", job_id, attempt, exc)


async def _move_on(
    engine: AsyncEngine,
    pool: ArqRedis,
    move: Move,
    job_id: str,
    attempt: int,
    to: JobStatus,
    values: dict[str, Any],
    message: str,
) -> bool:
    """Make `move` of a running job of this attempt, with a log event saying why; False if it moved meanwhile."""
    events: list[Pending] = []
    async with writing(engine) as conn:
        if await make(conn, move, job_id, to, attempt=attempt, values=values, events=events) is None:
            return False  # someone else took it over, or it ended
        events.append(Pending(job_id, "log", {"job_id": job_id, "level": "warning", "message": message}))
        await append(conn, events)
    await publish(pool, [job_id])
    return True
