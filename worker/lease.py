"""Leases: a worker holds `orch:lease:{job}` (value: the attempt) for every job it runs, renewed by a
heartbeat; the reaper takes over jobs whose lease is gone. A worker that finds a newer attempt in
the lease was fenced out (its job resumed elsewhere) and stops that run."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from redis.exceptions import RedisError

from orchestrator import queue

if TYPE_CHECKING:
    from worker.executor import Executor

TTL_MS = 5000
HEARTBEAT_S = 2.0


#: Drop the lease only when it is this run's (or gone): a newer attempt elsewhere keeps its own.
DROP = """
local holder = redis.call('get', KEYS[1])
if holder == false or holder == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class Leases:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._drop = redis.register_script(DROP)

    async def take(self, job_id: str, attempt: int) -> None:
        """Best effort: with Redis away the heartbeat takes it as soon as Redis is back."""
        with contextlib.suppress(RedisError, OSError):
            await self._redis.set(queue.lease_key(job_id), attempt, px=TTL_MS)

    async def drop(self, job_id: str, attempt: int) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._drop(keys=[queue.lease_key(job_id)], args=[str(attempt)])

    async def beat(self, running: dict[str, Executor]) -> None:
        executors = [e for e in running.values() if e.leased]
        if not executors:
            return
        holders = await self._redis.mget([queue.lease_key(e.job_id) for e in executors])
        async with self._redis.pipeline(transaction=False) as pipe:
            for executor, holder in zip(executors, holders, strict=True):
                if holder is not None and int(holder) > executor.attempt:
                    executor.fenced_out()
                    continue
                pipe.set(queue.lease_key(executor.job_id), executor.attempt, px=TTL_MS)
            await pipe.execute()
