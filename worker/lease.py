"""Leases: a worker holds `orch:lease:{job}` (value: the attempt) for every job it runs, renewed by a
heartbeat; the reaper takes over jobs whose lease is gone. A worker that finds a newer attempt in
the lease was fenced out (its job resumed elsewhere) and stops that run."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from orchestrator.keys import lease_key

TTL_MS = 5000
HEARTBEAT_S = 2.0


#: Drop the lease only when it is this run's (or gone): a newer attempt elsewhere keeps its own.
DROP = """
local holder = redis.call('get', KEYS[1])
if holder == false or holder == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class Leased(Protocol):
    """A run that may hold a lease."""

    job_id: str
    attempt: int

    @property
    def leased(self) -> bool:
        """Whether the run has taken its lease (the heartbeat renews only those)."""

    def fenced_out(self) -> None:
        """A newer attempt of the job runs elsewhere: write nothing more and stop."""


class Leases:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._drop = redis.register_script(DROP)

    async def take(self, job_id: str, attempt: int) -> None:
        """Best effort: with Redis away the heartbeat takes it as soon as Redis is back."""
        with contextlib.suppress(RedisError, OSError):
            await self._redis.set(lease_key(job_id), attempt, px=TTL_MS)

    async def drop(self, job_id: str, attempt: int) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._drop(keys=[lease_key(job_id)], args=[str(attempt)])

    async def beat(self, running: Mapping[str, Leased]) -> None:
        runs = [run for run in running.values() if run.leased]
        if not runs:
            return
        holders = await self._redis.mget([lease_key(run.job_id) for run in runs])
        async with self._redis.pipeline(transaction=False) as pipe:
            for run, holder in zip(runs, holders, strict=True):
                if holder is not None and int(holder) > run.attempt:
                    run.fenced_out()
                    continue
                pipe.set(lease_key(run.job_id), run.attempt, px=TTL_MS)
            await pipe.execute()
