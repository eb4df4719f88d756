"""This worker process in the worker registry (orchestrator/workers.py): announced when it starts, again
at every beat (the leases' rhythm, worker/lease.py) with the jobs it runs now, and withdrawn when it
stops cleanly. A worker that dies stops beating: it shows as lost, then disappears."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from orchestrator import workers
from orchestrator.config import Settings
from worker.lease import HEARTBEAT_S

log = logging.getLogger(__name__)


class Capacity(Protocol):
    """The worker's slots (arq's Worker): how many, and how many are taken (a job waiting for a person
    gives its slot back meanwhile)."""

    max_jobs: int
    job_counter: int


class Presence:
    def __init__(
        self, redis: Redis, settings: Settings, robot: str, capacity: Capacity, running: Mapping[str, Any]
    ) -> None:
        self._redis = redis
        self._capacity = capacity
        self._running = running
        self._record = workers.Record(
            id=robot,
            concurrency=capacity.max_jobs,
            lost_after_s=settings.worker_lost_s,
            gone_after_s=settings.worker_gone_s,
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._announce()
        self._task = asyncio.create_task(self._beat(), name="worker-presence")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(RedisError, OSError):
            await workers.withdraw(self._redis, self._record.id)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            await self._announce()

    async def _announce(self) -> None:
        """Best effort: with Redis away the worker runs on, and the next beat announces it again."""
        self._record.busy_slots = max(0, self._capacity.job_counter)
        self._record.running_jobs = sorted(self._running)
        try:
            await workers.announce(self._redis, self._record)
        except (RedisError, OSError) as exc:
            log.warning("could not announce this worker (%s); trying again at the next beat", exc)
