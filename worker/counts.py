"""What this worker adds to the cluster's metrics (orchestrator/metrics.py): jobs started and finished,
steps finished, each counted once the write it counts has committed.

A run pays a callback and a dict addition: the additions pile up here and go to Redis in one pipeline
FLUSH_S after the first of them, whatever the rate, and at shut-down. While Redis is away they are kept
(their fields are bounded: runbooks, actions and statuses, not jobs) and sent with the next flush. A
worker killed outright loses at most the last FLUSH_S of them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from orchestrator import metrics
from orchestrator.db.tables import aware, utcnow
from worker.committer import Fence

log = logging.getLogger(__name__)

#: Seconds between the first addition and the pipeline that sends it (and all that came meanwhile).
FLUSH_S = 0.5


class Counts:
    def __init__(self, redis: Redis, flush_s: float = FLUSH_S) -> None:
        self._redis = redis
        self._flush_s = flush_s
        self._pending: dict[tuple[str, str], int | float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._sending: asyncio.Task[None] | None = None

    # -- what a run reports ---------------------------------------------------------------------

    def started(self, job: Mapping[str, Any], claimed: asyncio.Future[Any]) -> None:
        """A run claimed its job: once the claim commits, the time the job waited since it was queued
        (or since the time it was scheduled for). A job claimed again (after its worker was lost or
        stopped) started before: not counted again."""
        if job.get("started_at") is not None:
            return
        since = aware(job.get("scheduled_at") or job["created_at"])
        claimed.add_done_callback(
            lambda f: self._if_committed(f, lambda: metrics.job_started((utcnow() - since).total_seconds()))
        )

    def step(self, row: Mapping[str, Any], written: asyncio.Future[Any], fence: Fence) -> None:
        """A top-level step ended (its row, `written`, goes to the database)."""
        action, status = str(row["action"]), str(row["status"])
        written.add_done_callback(
            lambda f: None if fence.broken else self._if_committed(f, lambda: metrics.step_finished(action, status))
        )

    def finished(self, runbook: str, duration_s: float, ended: asyncio.Future[Any]) -> None:
        """A run ended: once its end commits, its duration, and the job's end with the status that stands
        (ops.Finish answers it; None when a newer attempt of the job ends it instead)."""

        def adds(status: Any) -> list[metrics.Add]:
            if not status:
                return []
            return metrics.job_finished(runbook, str(status)) + metrics.job_duration(runbook, duration_s)

        ended.add_done_callback(lambda f: self._if_committed(f, lambda: adds(f.result())))

    def _if_committed(self, future: asyncio.Future[Any], adds: Any) -> None:
        if not future.cancelled() and future.exception() is None:
            self.add(adds())

    # -- to Redis -------------------------------------------------------------------------------

    def add(self, adds: Iterable[metrics.Add]) -> None:
        for key, name, amount in adds:
            self._pending[key, name] = self._pending.get((key, name), 0) + amount
        if self._pending and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._flush_s, self._flush_soon)

    def _flush_soon(self) -> None:
        self._timer = None
        if self._sending is None or self._sending.done():
            self._sending = asyncio.create_task(self.flush(), name="worker-metrics")
        else:  # the last pipeline is still on its way: this one goes after it
            self._timer = asyncio.get_running_loop().call_later(self._flush_s, self._flush_soon)

    async def flush(self) -> None:
        """Send what piled up; kept for the next flush when Redis is away."""
        taken, self._pending = self._pending, {}
        if not taken:
            return
        try:
            await metrics.add(self._redis, [(key, name, amount) for (key, name), amount in taken.items()])
        except (RedisError, OSError) as exc:
            log.warning("could not add to the metrics (%s); trying again", exc)
            self.add((key, name, amount) for (key, name), amount in taken.items())

    async def close(self) -> None:
        """At shut-down: send what is left, once."""
        await asyncio.sleep(0)  # the callbacks of the writes committed last
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sending is not None:
            with contextlib.suppress(Exception):
                await self._sending
        await self.flush()
        if self._timer is not None:  # it failed: Redis is away, and these are lost
            self._timer.cancel()
            self._timer = None
