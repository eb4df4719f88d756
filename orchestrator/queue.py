"""The arq queue: enqueue with priority as an earlier score, deferral, and a wake-up for idle workers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import in_progress_key_prefix, job_key_prefix
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.db import tables as t
from orchestrator.db.engine import reading, writing
from orchestrator.db.tables import utcnow

FUNCTION = "run_job"
#: Published after every enqueue so workers start at once instead of waiting for their next poll.
WAKE_CHANNEL = "orch:wake"
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
    pool: ArqRedis, job_id: str, attempt: int = 1, priority: str = "normal", run_at: datetime | None = None
) -> None:
    now = utcnow()
    when = run_at if run_at and run_at > now else now - PRIORITY_HEAD_START.get(priority, timedelta(0))
    await pool.enqueue_job(FUNCTION, job_id, attempt, _job_id=arq_job_id(job_id, attempt), _defer_until=when)
    await pool.publish(WAKE_CHANNEL, job_id)


async def reconcile(engine: AsyncEngine, pool: ArqRedis, older_than: timedelta = timedelta(seconds=5)) -> int:
    """Enqueue again every queued job Redis does not hold (flushed, or down when the job was created),
    and every queued job a worker took from the queue but died before claiming (arq's in-progress
    mark stays, no lease was ever taken): that one goes on as its next attempt. arq ignores a job id
    it already holds, so this never runs a job twice."""
    cutoff = utcnow() - older_than
    query = select(t.jobs.c.id, t.jobs.c.attempt, t.jobs.c.priority, t.jobs.c.updated_at).where(
        t.jobs.c.status == "queued", t.jobs.c.updated_at < cutoff
    )
    async with reading(engine) as conn:
        rows = (await conn.execute(query.limit(1000))).all()
    enqueued = 0
    for row in rows:
        arq_id = arq_job_id(row.id, row.attempt)
        queued, taken = await pool.exists(job_key_prefix + arq_id), await pool.exists(in_progress_key_prefix + arq_id)
        if not queued and not taken:
            await enqueue(pool, row.id, row.attempt, row.priority)
            enqueued += 1
        elif taken and not await pool.exists(lease_key(row.id)) and _aware(row.updated_at) < cutoff - older_than:
            enqueued += await _retake(engine, pool, row.id, row.attempt, row.priority)
    return enqueued


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def _retake(engine: AsyncEngine, pool: ArqRedis, job_id: str, attempt: int, priority: str) -> int:
    """The worker that took this queued job died before it claimed it: queue the next attempt."""
    async with writing(engine) as conn:
        moved = await conn.execute(
            update(t.jobs)
            .where(t.jobs.c.id == job_id, t.jobs.c.status == "queued", t.jobs.c.attempt == attempt)
            .values(attempt=attempt + 1, updated_at=utcnow())
        )
    if moved.rowcount != 1:
        return 0
    await enqueue(pool, job_id, attempt + 1, priority)
    return 1


def lease_key(job_id: str) -> str:
    """Held by the worker running a job (value: its attempt), renewed by a heartbeat."""
    return f"orch:lease:{job_id}"
