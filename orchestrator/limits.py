"""Runbook concurrency limits (`settings.concurrency`) across every worker, kept in Redis.

A job of a limited runbook joins its runbook's line when it is made; a worker that picks it up
asks for a slot first, and gets one only when the job is first in line. Without one the job stays
`queued` in the database and joins the runbook's waiting line (ordered like the queue: by time,
with the priority head start); the worker goes on with other work. When a slot frees, the first
job in line gets it at once (the slot is reserved for it) and goes back on the queue.

A slot whose holder has no lease for longer than GRACE_MS (its worker died, or a reserved job never
arrived) is taken back the next time anyone looks; the reconciler looks periodically.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import queue
from orchestrator.db import tables as t
from orchestrator.db.engine import reading
from orchestrator.db.tables import aware
from orchestrator.keys import LIMITS_KEY, lease_key, line_key, slots_key

GRACE_MS = 15_000

#: KEYS: slots, line. ARGV: job ('' to only hand out free slots), its place in line, the limit, now
#: (ms), grace (ms), the lease key prefix, 'take' or 'give' (give back the job's slot).
#: Returns {1 if the job holds a slot, the other jobs that were just given one}.
ADMIT = """
local slots, line = KEYS[1], KEYS[2]
local job, place, limit, now, grace, prefix, mode = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]),
  tonumber(ARGV[5]), ARGV[6], ARGV[7]
for _, holder in ipairs(redis.call('zrangebyscore', slots, '-inf', now - grace)) do
  if holder ~= job and redis.call('exists', prefix .. holder) == 0 then redis.call('zrem', slots, holder) end
end
local holds = 0
if mode == 'give' then
  redis.call('zrem', slots, job)
elseif job ~= '' then
  if redis.call('zscore', slots, job) then
    redis.call('zadd', slots, now, job)
    holds = 1
  else
    redis.call('zadd', line, 'NX', place, job)
  end
end
local given = {}
while redis.call('zcard', slots) < limit do
  local head = redis.call('zrange', line, 0, 0)[1]
  if not head then break end
  redis.call('zrem', line, head)
  redis.call('zadd', slots, now, head)
  if head == job then holds = 1 else table.insert(given, head) end
end
return {holds, given}
"""


def place(created_at: datetime, priority: str) -> float:
    """A job's place in its runbook's line: the same order as the queue (priority as a head start)."""
    head_start = queue.PRIORITY_HEAD_START.get(priority, queue.PRIORITY_HEAD_START["normal"])
    return (aware(created_at) - head_start).timestamp() * 1000


async def join_line(
    redis: ArqRedis, runbook: str, limit: int, job_id: str, created_at: datetime, priority: str
) -> None:
    """A new job of a limited runbook takes its place in line when it is made, so jobs picked up at
    the same moment by several workers still start in the order they were made. The limit is
    recorded too, so the reconciler's `hand_out` can start it should its enqueue be lost."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(LIMITS_KEY, runbook, str(limit))
        pipe.zadd(line_key(runbook), {job_id: place(created_at, priority)}, nx=True)
        await pipe.execute()


class Limits:
    def __init__(self, engine: AsyncEngine, redis: ArqRedis) -> None:
        self._engine, self._redis = engine, redis
        self._admit = redis.register_script(ADMIT)

    async def take(self, runbook: str, limit: int, job_id: str, order: float) -> bool:
        """Whether the job may start now; if not, it waits in line and is enqueued when its turn comes."""
        await self._redis.hset(LIMITS_KEY, runbook, str(limit))  # type: ignore[misc]  # redis-py's sync|async union
        return await self._call(runbook, limit, job_id, order, "take")

    async def give(self, runbook: str, limit: int, job_id: str) -> None:
        await self._call(runbook, limit, job_id, 0, "give")

    async def hand_out(self) -> None:
        """Give free slots to waiting jobs of every limited runbook (the reconciler's periodic look)."""
        limits: dict[Any, Any] = await self._redis.hgetall(LIMITS_KEY)  # type: ignore[misc]
        for runbook, limit in limits.items():
            await self._call(_text(runbook), int(limit), "", 0, "take")

    async def _call(self, runbook: str, limit: int, job_id: str, order: float, mode: str) -> bool:
        now = int(time.time() * 1000)
        args: list[str | int | float] = [job_id, order, limit, now, GRACE_MS, lease_key(""), mode]
        holds, given = await self._admit(keys=[slots_key(runbook), line_key(runbook)], args=args)
        if given:
            await self._enqueue([_text(g) for g in given])
        return bool(holds)

    async def _enqueue(self, job_ids: list[str]) -> None:
        query = select(t.jobs.c.id, t.jobs.c.attempt, t.jobs.c.priority).where(t.jobs.c.id.in_(job_ids))
        async with reading(self._engine) as conn:
            rows = list(await conn.execute(query))
        for row in rows:
            await queue.enqueue_when_free(self._redis, row.id, row.attempt, row.priority)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
