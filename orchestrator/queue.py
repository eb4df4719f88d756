"""The arq queue: enqueue with priority as an earlier score, deferral, and a wake-up for idle workers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.utils import to_unix_ms
from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.db import tables as t
from orchestrator.db.engine import reading, writing
from orchestrator.db.tables import aware, utcnow
from orchestrator.keys import WAKE_CHANNEL, lease_key, line_key
from orchestrator.states import JobStatus

FUNCTION = "run_job"
#: Published after every enqueue so workers start at once instead of waiting for their next poll.
#: How far ahead of its enqueue time a job of each priority is scored (a smaller score runs first).
#: Scores are fixed at enqueue, so a waiting low job eventually beats newer normal ones: age raises it.
PRIORITY_HEAD_START = {"low": timedelta(0), "normal": timedelta(seconds=60), "high": timedelta(minutes=10)}


def redis_settings(url: str) -> RedisSettings:
    settings = RedisSettings.from_dsn(url)
    settings.conn_retries = 30
    settings.conn_retry_delay = 1
    return settings


async def connect(url: str) -> ArqRedis:
    return await create_pool(redis_settings(url))


def arq_job_id(job_id: str, attempt: int) -> str:
    return f"{job_id}:{attempt}"


async def enqueue(
    pool: ArqRedis,
    job_id: str,
    attempt: int = 1,
    priority: str = "normal",
    run_at: datetime | None = None,
    now: datetime | None = None,
    trace: str | None = None,
) -> bool:
    """Put the job on the queue; False when arq still holds this attempt (queued, or just finishing).
    `trace`: the traceparent of its enqueue span (orchestrator/tracing.py), carried to the run as a keyword."""
    when = _start(priority, run_at, now or utcnow())
    traced: dict[str, Any] = {"trace": trace} if trace else {}
    job = await pool.enqueue_job(
        FUNCTION, job_id, attempt, _job_id=arq_job_id(job_id, attempt), _defer_until=when, **traced
    )
    await pool.publish(WAKE_CHANNEL, job_id)
    return job is not None


def _start(priority: str, run_at: datetime | None, now: datetime) -> datetime:
    """The job's place on arq's queue (its score): its time when that is later, else now moved ahead by
    its priority."""
    return run_at if run_at and run_at > now else now - PRIORITY_HEAD_START.get(priority, timedelta(0))


async def enqueue_when_free(pool: ArqRedis, job_id: str, attempt: int, priority: str, seconds: float = 5) -> None:
    """Enqueue a job whose previous pass through arq may still be finishing (its keys not yet gone);
    should it take longer than `seconds`, the reconciler enqueues it."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await enqueue(pool, job_id, attempt, priority):
        if await pool.zscore(pool.default_queue_name, arq_job_id(job_id, attempt)) is not None:
            return  # still waiting on the queue: it comes round by itself
        if asyncio.get_running_loop().time() > deadline:
            return
        await asyncio.sleep(0.05)


#: A run hands its last writes to its worker's committer and returns to arq, which then deletes
#: the job's keys: for a moment a finished job can look queued in the database and absent from
#: Redis. The reconciler waits this long and reads the row again before enqueuing it.
SETTLE_S = 1.0

#: Put a job whose arq payload is still stored back on arq's queue, unless a worker holds it now.
#: KEYS: the queue, the job's key, its in-progress key; ARGV: its score, its arq id.
REQUEUE = """
if redis.call('exists', KEYS[2]) == 1 and redis.call('exists', KEYS[3]) == 0 then
  return redis.call('zadd', KEYS[1], 'NX', ARGV[1], ARGV[2])
end
return 0
"""


async def reconcile(engine: AsyncEngine, pool: ArqRedis, older_than: timedelta = timedelta(seconds=5)) -> int:
    """Enqueue again every queued job Redis does not hold (flushed, or down when the job was created),
    and every scheduled job due within `older_than` that it does not hold (then at its time), and put
    back on arq's queue every such job whose payload Redis still holds but whose place on the queue
    it lost (the queue's key deleted or evicted: arq would refuse to enqueue that id again, and no
    worker would ever see it), and every queued job a worker took from the queue but died before
    claiming (arq's in-progress mark stays, no lease was ever taken): that one goes on as its next
    attempt. arq ignores a job id it already holds and a worker's claim moves the job on only from
    queued at its attempt, so this never runs a job twice."""
    now = utcnow()
    cutoff = now - older_than
    jobs = t.jobs.c
    query = select(jobs.id, jobs.runbook, jobs.attempt, jobs.priority, jobs.updated_at, jobs.scheduled_at).where(
        jobs.updated_at < cutoff,
        # a job for later counts once its time is near: Redis may have lost its deferred entry too
        or_(
            jobs.status == JobStatus.QUEUED.value,
            and_(jobs.status == JobStatus.SCHEDULED.value, jobs.scheduled_at <= now + older_than),
        ),
    )
    async with reading(engine) as conn:
        rows = (await conn.execute(query.limit(1000))).all()
    lost, stranded, dead = await _sort_out(pool, rows, cutoff - older_than) if rows else ([], [], [])
    if not lost and not stranded and not dead:
        return 0
    # The snapshot above is older than what Redis just said: keep only the jobs still queued, on the
    # same attempt, after the runs that were finishing meanwhile have committed.
    await asyncio.sleep(SETTLE_S)
    async with reading(engine) as conn:
        still = {
            (r.id, r.attempt, r.updated_at)
            for r in await conn.execute(query.where(t.jobs.c.id.in_([r.id for r in lost + stranded + dead])))
        }
    enqueued = 0
    for row in (r for r in lost if (r.id, r.attempt, r.updated_at) in still):
        await enqueue(pool, row.id, row.attempt, row.priority, aware(row.scheduled_at) if row.scheduled_at else None)
        enqueued += 1
    for row in (r for r in stranded if (r.id, r.attempt, r.updated_at) in still):
        enqueued += await _requeue(pool, row)
    for row in (r for r in dead if (r.id, r.attempt, r.updated_at) in still):
        enqueued += await _retake(engine, pool, row.id, row.attempt, row.priority)
    return enqueued


async def _sort_out(pool: ArqRedis, rows: Sequence[Any], dead_before: datetime) -> tuple[list[Any], ...]:
    """The queued jobs Redis lost whole, those whose place on arq's queue it lost (the payload kept),
    and those a worker took but never claimed (taken, no lease, not moved since `dead_before`). What
    Redis holds of them is read in one MULTI, at one instant: a worker ending a job deletes its
    payload and its place on the queue in one transaction too."""
    async with pool.pipeline(transaction=True) as pipe:
        for row in rows:
            arq_id = arq_job_id(row.id, row.attempt)
            pipe.exists(job_key_prefix + arq_id)
            pipe.exists(in_progress_key_prefix + arq_id)
            pipe.zscore(pool.default_queue_name, arq_id)
            pipe.exists(lease_key(row.id))
            pipe.zscore(line_key(row.runbook), row.id)  # waiting for a slot of its runbook
        found = await pipe.execute()
    lost, stranded, dead = [], [], []
    for i, row in enumerate(rows):
        stored, taken, placed, leased, in_line = found[5 * i : 5 * i + 5]
        if in_line is not None:
            continue
        if not stored and not taken:
            lost.append(row)
        elif stored and not taken and placed is None:
            stranded.append(row)
        elif taken and not leased and aware(row.updated_at) < dead_before:
            dead.append(row)
    return lost, stranded, dead


async def _requeue(pool: ArqRedis, row: Any) -> int:
    """Put back on arq's queue a job whose payload arq still stores; 1 when this call did."""
    arq_id = arq_job_id(row.id, row.attempt)
    when = _start(row.priority, aware(row.scheduled_at) if row.scheduled_at else None, utcnow())
    keys = [pool.default_queue_name, job_key_prefix + arq_id, in_progress_key_prefix + arq_id]
    added = await pool.eval(REQUEUE, len(keys), *keys, str(to_unix_ms(when)), arq_id)  # type: ignore[misc]
    if added:
        await pool.publish(WAKE_CHANNEL, row.id)
    return int(added)


async def _retake(engine: AsyncEngine, pool: ArqRedis, job_id: str, attempt: int, priority: str) -> int:
    """The worker that took this queued job died before it claimed it: queue the next attempt."""
    async with writing(engine) as conn:
        moved = await conn.execute(
            update(t.jobs)
            .where(t.jobs.c.id == job_id, t.jobs.c.status == JobStatus.QUEUED.value, t.jobs.c.attempt == attempt)
            .values(attempt=attempt + 1, updated_at=utcnow())
        )
    if moved.rowcount != 1:
        return 0
    await forget(pool, job_id, attempt)
    await enqueue(pool, job_id, attempt + 1, priority)
    return 1


async def forget(pool: ArqRedis, job_id: str, attempt: int) -> None:
    """Drop what arq holds of an attempt that is over (its worker lost or stopping, the next attempt
    queued): its place on the queue and its keys go now, not when they expire (a day for its payload,
    a week for a taken job's in-progress mark, meanwhile counted on the queue and read at every poll)."""
    arq_id = arq_job_id(job_id, attempt)
    async with pool.pipeline(transaction=True) as tr:
        tr.delete(job_key_prefix + arq_id, in_progress_key_prefix + arq_id, retry_key_prefix + arq_id)
        tr.zrem(pool.default_queue_name, arq_id)
        await tr.execute()
