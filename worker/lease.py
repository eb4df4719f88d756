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


class Leases:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def take(self, job_id: str, attempt: int) -> None:
        """Best effort: with Redis away the heartbeat takes it as soon as Redis is back."""
        with contextlib.suppress(RedisError, OSError):
            await self._redis.set(queue.lease_key(job_id), attempt, px=TTL_MS)

    async def drop(self, job_id: str, attempt: int) -> None:
        key = queue.lease_key(job_id)
        with contextlib.suppress(RedisError, OSError):
            if (await self._redis.get(key)) in (str(attempt).encode(), None):
                await self._redis.delete(key)

    async def beat(self, running: dict[str, Executor]) -> None:
        executors = list(running.values())
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
