"""What a run writes: its writes carried to the committer (worker/committer.py) in order, without
waiting, every secret masked and all fenced by the run's attempt; the rows and events of its steps;
and the commit a browser step waits for before it begins."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from orchestrator.events import Pending
from orchestrator.views import artifact_url, iso, step_view
from worker.committer import Committer, Fence, Statement, Write
from worker.context import StepContext
from worker.masks import masked
from worker.statements import INSERT_ARTIFACT, UPDATE_CHECKPOINT, UPDATE_STEP

log = logging.getLogger(__name__)

#: A step that ends within this many seconds is written once, when it ends; a longer one is
#: announced as running then. Writes per step are where throughput goes.
RUNNING_NOTICE_S = 0.05


class RunWriter:
    def __init__(self, job_id: str, attempt: int, committer: Committer) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.fence = Fence(attempt)
        #: Every form of the job's secret inputs, once known: masked in everything written.
        self.secrets: frozenset[str] = frozenset()
        #: The row of the top-level step running now (an approval inside it waits on it).
        self.step: dict[str, Any] = {}
        self._committer = committer
        self._pending: list[asyncio.Future[Any]] = []
        self._last: Write | None = None  # this run's latest write
        self._unsynced: asyncio.Future[Any] | None = None  # the write of the last browser step, until committed
        self._notice: asyncio.TimerHandle | None = None

    @property
    def fenced(self) -> bool:
        """A write of this run was refused, or a newer attempt runs the job: nothing more is written."""
        return self.fence.broken

    def write(
        self, *ops: Any, statements: list[Statement] | None = None, events: list[Pending] | None = None
    ) -> asyncio.Future[Any]:
        if self.secrets:
            ops, statements, events = masked(self.secrets, ops, statements or [], events or [])
        last = self._last
        if not ops and last is not None and not last.taken and last.done is not None:
            # The run's previous write still waits for the committer: this one rides along (fewer
            # writes to carry to the writer and apply; the order within the job is the same).
            last.statements.extend(statements or ())
            last.events.extend(events or ())
            return last.done
        write = Write(self.job_id, list(ops), events or [], fence=self.fence, statements=statements or [])
        future = self._committer.submit(write)
        self._last = write
        self._pending.append(future)
        return future

    def log(self, level: str, message: str) -> Pending:
        """A `log` event of this job."""
        return Pending(self.job_id, "log", {"job_id": self.job_id, "level": level, "message": message})

    async def flush(self) -> None:
        """Wait until everything written so far is committed."""
        pending, self._pending = self._pending, []
        await asyncio.gather(*pending)

    async def settle(self) -> None:
        """Hand the last writes to the committer without holding the worker slot until they commit;
        the committer commits them in order and drains before the worker exits. Unless it is far
        behind: then the run waits for them, so the worker takes no more jobs than it can record
        (and the reconciler never sees a finished job still queued in the database for long)."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.add_done_callback(self._report_failure)
        if pending and self._committer.behind:
            await asyncio.wait(pending)

    def _report_failure(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            log.error("job %s: a write failed: %s", self.job_id, future.exception())

    # -- steps -----------------------------------------------------------------------------------

    def begin(self, row: dict[str, Any]) -> None:
        """A top-level step starts: it is announced as running unless it ends within RUNNING_NOTICE_S."""
        self.step = row
        self._notice = asyncio.get_running_loop().call_later(
            RUNNING_NOTICE_S,
            lambda: self.write(statements=[self.update_step(dict(row))], events=[self.step_event(row)]),
        )

    def quiet(self) -> None:
        """The running step is announced otherwise (it ended, or it waits): no notice."""
        if self._notice is not None:
            self._notice.cancel()

    def step_event(self, row: dict[str, Any], screenshot: str | None = None) -> Pending:
        step = step_view({**row, "job_id": self.job_id}, screenshot)
        return Pending(self.job_id, "step", {"job_id": self.job_id, "step": step})

    def update_step(self, row: dict[str, Any]) -> Statement:
        values = {k: v for k, v in row.items() if k not in ("step_id", "name", "action")}
        return UPDATE_STEP, {"b_job": self.job_id, "b_step": row["step_id"], **values}

    def record_step(
        self, row: dict[str, Any], ctx: StepContext, sealed_checkpoint: dict[str, Any] | None
    ) -> asyncio.Future[Any]:
        """A step ended: its row, files, screenshots and log lines, and the page's checkpoint when it moved.
        Returns the write, done once they are committed."""
        job_id = self.job_id
        shots = [a for a in ctx.artifacts if a["kind"] == "screenshot"]
        shot_url = artifact_url(job_id, shots[-1]["id"]) if shots else None
        events = [self.step_event(row, shot_url)]
        events += [
            Pending(
                job_id,
                "screenshot",
                {
                    "job_id": job_id,
                    "step_id": row["step_id"],
                    "url": artifact_url(job_id, a["id"]),
                    "at": iso(a["created_at"]),
                },
            )
            for a in shots
        ]
        events += [self.log(level, message) for level, message in ctx.logs]
        statements = [self.update_step(row), *[(INSERT_ARTIFACT, artifact) for artifact in ctx.artifacts]]
        if sealed_checkpoint is not None:
            statements.append((UPDATE_CHECKPOINT, {"b_job": job_id, "checkpoint": sealed_checkpoint}))
        written = self.write(statements=statements, events=events)
        if ctx.touched_browser:
            self.unsynced(written)
        return written

    def unsynced(self, written: asyncio.Future[Any]) -> None:
        """The next browser step begins only once this write is committed."""
        self._unsynced = written

    async def durable(self, ctx: StepContext) -> bool:
        """Before a browser step begins, the end of the last one is committed: should this worker die
        now, the next attempt knows that step is done and does not do it to the target again (a click
        that submitted, a download). Steps without a browser still ride in batches. False when this
        run may not go on: a newer attempt took the job over meanwhile."""
        ctx.touched_browser = True
        unsynced, self._unsynced = self._unsynced, None
        if unsynced is not None:
            with contextlib.suppress(Exception):  # a failed write is the committer's to report
                await unsynced
        return not self.fence.broken
