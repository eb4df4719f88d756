"""What people do to a running job, seen from the worker: pause at a step boundary, approval on
the same page, cancel at once. A job waiting for a person holds no worker slot."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from playwright.async_api import Error as PlaywrightError
from sqlalchemy import select

from orchestrator.approvals import timeout_decision
from orchestrator.db import tables as t
from orchestrator.db.tables import utcnow
from orchestrator.errors import ApprovalRefused
from orchestrator.events import Pending
from orchestrator.states import JobStatus, StepStatus
from orchestrator.views import artifact_url, iso
from worker.committer import Statement
from worker.context import StepContext
from worker.rows import INSERT_ARTIFACT, RequestApproval, TimeOutApproval, jsonable

if TYPE_CHECKING:
    from worker.deps import Deps

#: How often a waiting or running job looks at its status in case a Redis signal was missed.
CONTROL_POLL_S = 2.0


class PeopleMixin:
    """The part of the Executor that answers to people (mixed into it; see worker/executor.py)."""

    deps: Deps
    job_id: str
    attempt: int
    cancelled: bool
    _news: asyncio.Event
    _pause_requested: bool
    _checked_at: float
    _job_deadline: float
    _row: dict[str, Any]
    _page: Any
    _masks: list[Any]
    _step_task: asyncio.Task[Any] | None
    _notice: asyncio.TimerHandle | None
    _rerun_of: str | None

    def _write(
        self, *ops: Any, statements: list[Statement] | None = None, events: list[Pending] | None = None
    ) -> asyncio.Future[Any]:
        raise NotImplementedError

    def _update_step(self, row: dict[str, Any]) -> Statement:
        raise NotImplementedError

    def _step_event(self, row: dict[str, Any], screenshot: str | None = None) -> Pending:
        raise NotImplementedError

    def signal(self, action: str) -> None:
        """A person acted on the job (the worker relays the Redis message)."""
        if action == "pause":
            self._pause_requested = True
        self._news.set()
        if action == "cancel":
            self.cancel()

    async def _status(self) -> JobStatus:
        job_id = self.job_id
        status = await self.deps.committer.read(
            lambda conn: conn.execute(select(t.jobs.c.status).where(t.jobs.c.id == job_id)).scalar()
        )
        return JobStatus(status)

    async def _wait_while(self, statuses: set[JobStatus], seconds: float | None) -> JobStatus:
        """Wait, holding no worker slot, while the job stays in `statuses`; the time does not count
        against the job's time limit. Returns the status it moved to (or has when `seconds` run out)."""
        began = time.monotonic()
        deadline = None if seconds is None else began + seconds
        self.deps.slots.park()
        try:
            while True:
                self._news.clear()
                status = await self._status()
                left = CONTROL_POLL_S if deadline is None else min(CONTROL_POLL_S, deadline - time.monotonic())
                if status not in statuses or left <= 0:
                    return status
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await self._news.wait()
        finally:
            self._job_deadline += time.monotonic() - began
            await self.deps.slots.unpark()

    async def _honour_pause(self) -> None:
        """At a step boundary: stop here while the job is paused (asked by signal, or seen by a poll)."""
        if not self._pause_requested and time.monotonic() - self._checked_at < CONTROL_POLL_S:
            return
        self._pause_requested, self._checked_at = False, time.monotonic()
        status = await self._status()
        if status is JobStatus.PAUSED:
            status = await self._wait_while({JobStatus.PAUSED}, None)
        if status is JobStatus.CANCELLED:
            self.cancelled = True

    async def _ask(self, ctx: StepContext, message: str, seconds: float | None, on_timeout: str) -> dict[str, Any]:
        """Put the job in waiting_for_approval on the same page and wait for the decision."""
        requested = utcnow()
        approval: dict[str, Any] = {
            "step_id": ctx.step_id,
            "message": message,
            "requested_at": iso(requested),
            "timeout_s": seconds,
            "on_timeout": on_timeout,
            "captured": jsonable(ctx.captured, ctx.secrets),
        }
        if self._rerun_of:  # a re-run asks again; the panel shows what was decided the last time
            approval["rerun_of"] = self._rerun_of
            if earlier := await self._earlier_decision(ctx.step_id):
                approval["earlier"] = earlier
        shot = await self._evidence(ctx)
        if shot is not None:
            approval.update(screenshot_url=artifact_url(self.job_id, shot["id"]), screenshot_sha256=shot["sha256"])
        await self._request_approval(approval, shot)
        status = await self._wait_while({JobStatus.WAITING_FOR_APPROVAL}, seconds)
        if status is JobStatus.WAITING_FOR_APPROVAL:
            status = await self._time_out_approval(seconds or 0, on_timeout)
        if status is JobStatus.CANCELLED:
            self.cancelled = True
            raise asyncio.CancelledError
        decided = await self.deps.committer.read(
            lambda conn: conn.execute(select(t.jobs.c.approval).where(t.jobs.c.id == self.job_id)).scalar()
        )
        decided = decided or {}
        if status is JobStatus.RUNNING:
            return {"decision": "approved", "by": decided.get("by"), "comment": decided.get("comment")}
        if decided.get("by") == "timeout":
            raise ApprovalRefused(str(decided.get("comment")))
        who = decided.get("by") or "the orchestrator"
        raise ApprovalRefused(f"Rejected by {who}" + (f": {decided['comment']}" if decided.get("comment") else "."))

    async def _earlier_decision(self, step_id: str) -> dict[str, Any] | None:
        """The decision the re-run job took at this approval step, if it got that far."""
        query = select(t.jobs.c.approval).where(t.jobs.c.id == self._rerun_of)
        earlier = await self.deps.committer.read(lambda conn: conn.execute(query).scalar())
        if not earlier or earlier.get("step_id") != step_id or not earlier.get("decision"):
            return None
        return {k: earlier.get(k) for k in ("decision", "by", "comment", "decided_at")}

    async def _evidence(self, ctx: StepContext) -> dict[str, Any] | None:
        if self._page is None or self._page.is_closed():
            return None
        try:
            image = await self._page.screenshot(mask=self._masks, timeout=5000)
        except PlaywrightError:
            return None
        return self.deps.svc.store.save(
            self.job_id, "screenshot", f"{ctx.step_id}-approval.png", image, step_id=ctx.step_id, mime_type="image/png"
        ).row

    async def _request_approval(self, approval: dict[str, Any], shot: dict[str, Any] | None) -> None:
        job_id, attempt = self.job_id, self.attempt
        if self._notice is not None:
            self._notice.cancel()  # the step is announced as waiting instead
        row = {**self._row, "status": StepStatus.WAITING.value}
        statements: list[Statement] = [self._update_step(row)]
        if shot is not None:
            statements.append((INSERT_ARTIFACT, shot))
        await self._write(
            RequestApproval(job_id, attempt, approval),
            statements=statements,
            events=[self._step_event(row, approval.get("screenshot_url"))],
        )

    async def _time_out_approval(self, seconds: float, on_timeout: str) -> JobStatus:
        job_id, attempt = self.job_id, self.attempt
        target = JobStatus.RUNNING if on_timeout == "approve" else JobStatus.FAILED
        decision = timeout_decision(seconds, on_timeout)
        await self._write(TimeOutApproval(job_id, attempt, target, decision))
        return await self._status()

    def cancel(self) -> None:
        """Called when a person cancels the job: stop the running step now."""
        self.cancelled = True
        if self._step_task is not None:
            self._step_task.cancel()
