"""What a run holds while it runs: its lease (worker/lease.py), and a slot of its runbook's
concurrency (settings.concurrency; orchestrator/limits.py)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from redis.exceptions import RedisError

from orchestrator.limits import place
from orchestrator.runbooks.schema import Runbook
from orchestrator.states import JobStatus
from worker.deps import Deps

#: A run takes its lease this long after it starts: the reaper acts only on a lease missing for
#: seconds, so a run that ends sooner never needs one (two Redis round trips saved per short job).
LEASE_AFTER_S = 0.05


class Hold:
    def __init__(self, deps: Deps, job_id: str, attempt: int) -> None:
        self._deps = deps
        self._job_id = job_id
        self._attempt = attempt
        self._timer: asyncio.TimerHandle | None = None
        self._lease: asyncio.Task[None] | None = None
        self._limited: tuple[str, int] | None = None  # (runbook, its concurrency) when this run holds a slot
        #: A newer attempt holds the lease (and the job's slot).
        self.superseded = False

    async def take_slot(self, runbook: Runbook, job: dict[str, Any], status: JobStatus) -> bool:
        """settings.concurrency: whether this job may run now; if not, it waits in line, still queued."""
        limit = runbook.settings.concurrency
        if status.finished:  # cancelled while in line: pass its turn on
            if limit:
                await self._deps.limits.give(job["runbook"], limit, self._job_id)
            return False
        if not limit or status not in (JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.RUNNING):
            return True
        order = place(job["scheduled_at"] or job["created_at"], job["priority"])
        if not await self._deps.limits.take(job["runbook"], limit, self._job_id, order):
            return False
        self._limited = (job["runbook"], limit)
        return True

    async def give_slot(self) -> None:
        """Give back this run's slot of its runbook's concurrency, unless a newer attempt of the job
        (which holds the same slot) has taken over."""
        limited, self._limited = self._limited, None
        if limited is not None and not self.superseded:
            with contextlib.suppress(RedisError, OSError):
                await self._deps.limits.give(*limited, self._job_id)

    def lease_soon(self) -> None:
        """Take the lease LEASE_AFTER_S from now, if the run still goes on then."""
        self._timer = asyncio.get_running_loop().call_later(LEASE_AFTER_S, self._take_lease)

    def _take_lease(self) -> None:
        self._lease = asyncio.create_task(self._deps.leases.take(self._job_id, self._attempt))

    @property
    def leased(self) -> bool:
        """Whether this run has taken its lease (the heartbeat renews only those)."""
        return self._lease is not None

    async def drop_lease(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._lease is not None:
            await asyncio.shield(self._lease)
            await self._deps.leases.drop(self._job_id, self._attempt)
