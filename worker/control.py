"""The control of a run: what people do to it, seen from the worker. Cancel interrupts the running
step at once, pause waits at the next step boundary, an approval waits on the same page; a job
waiting for a person holds no worker slot, and the time it waits does not count against its limit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import select

from orchestrator import control
from orchestrator.approvals import timeout_decision
from orchestrator.db import tables as t
from orchestrator.db.tables import utcnow
from orchestrator.errors import ApprovalRefused, StepTimeout
from orchestrator.keys import page_url_key
from orchestrator.states import JobStatus, StepStatus
from orchestrator.views import artifact_url, iso
from worker.committer import Statement
from worker.context import StepContext
from worker.deps import Deps
from worker.masks import jsonable
from worker.ops import HandOff, HandoffDone, RequestApproval, TimeOutApproval
from worker.statements import INSERT_ARTIFACT
from worker.writer import RunWriter

log = logging.getLogger(__name__)

#: How often a waiting or running job looks at its status in case a Redis signal was missed.
CONTROL_POLL_S = 2.0
#: How often a handoff looks at the page for its `until`.
HANDOFF_LOOK_S = 0.25


async def _dispatch(page: Any, event: dict[str, Any]) -> None:
    """One input as a person would make it: a click at viewport (CSS pixel) coordinates, text typed
    into the focused element, a key press, a wheel scroll."""
    kind = event["type"]
    if kind == "click":
        await page.mouse.click(event["x"], event["y"])
    elif kind == "type":
        await page.keyboard.type(event["text"])
    elif kind == "key":
        await page.keyboard.press(event["key"])
    elif kind == "scroll":
        await page.mouse.wheel(event.get("dx", 0), event.get("dy", 0))


async def _holds(page: Any, until: dict[str, Any]) -> bool:
    """Whether the page shows `until` now: its selector visible, and/or its URL matching (a glob, as
    Playwright's wait_for_url takes it). A page that is busy navigating does not hold yet."""
    try:
        if until.get("selector") and not await page.locator(until["selector"]).first.is_visible(timeout=0):
            return False
        if until.get("url"):
            await page.wait_for_url(until["url"], timeout=1, wait_until="commit")
    except Exception:  # noqa: BLE001 - a page between documents, a URL not matched: not yet
        return False
    return True


class Control:
    def __init__(
        self,
        deps: Deps,
        job_id: str,
        attempt: int,
        writer: RunWriter,
        snapshot: Callable[[], Awaitable[bytes | None]],
        page: Callable[[], Any] = lambda: None,
    ) -> None:
        self.cancelled = False
        #: When the job's time limit runs out (monotonic); each wait for a person moves it on.
        self.deadline = float("inf")
        #: The job this one re-runs: its approvals are asked again, showing what was decided then.
        self.rerun_of: str | None = None
        self._deps = deps
        self._job_id = job_id
        self._attempt = attempt
        self._writer = writer
        self._snapshot = snapshot  # the page as an image, for an approval's evidence
        self._page = page  # the job's page, if open: where a person's input goes while the run waits
        self._input_news = False
        self._news = asyncio.Event()
        self._pause_requested = False
        self._checked_at = time.monotonic()
        self._task: asyncio.Task[Any] | None = None

    def signal(self, action: str) -> None:
        """A person acted on the job (the worker relays the Redis message)."""
        if action == "input":  # someone at the wheel sent input (orchestrator/control.py)
            self._input_news = True
            self._news.set()
            return
        if action == "pause":
            self._pause_requested = True
        self._news.set()
        if action == "cancel":
            self.cancel()

    def cancel(self) -> None:
        """The job was cancelled (or taken over): stop the running step now."""
        self.cancelled = True
        if self._task is not None:
            self._task.cancel()

    async def interruptible(self, action: Coroutine[Any, Any, Any]) -> Any:
        """Run a step's action as the task a cancel interrupts."""
        self._task = asyncio.create_task(action)
        try:
            return await self._task
        finally:
            self._task = None

    async def status(self) -> JobStatus:
        job_id = self._job_id
        status = await self._deps.committer.read(
            lambda conn: conn.execute(select(t.jobs.c.status).where(t.jobs.c.id == job_id)).scalar()
        )
        return JobStatus(status)

    async def wait_while(self, statuses: set[JobStatus], seconds: float | None) -> JobStatus:
        """Wait, holding no worker slot, while the job stays in `statuses`; the time does not count
        against the job's time limit. Returns the status it moved to (or has when `seconds` run out)."""
        began = time.monotonic()
        deadline = None if seconds is None else began + seconds
        self._deps.slots.park()
        await self._at_the_wheel_begins()
        try:
            while True:
                self._news.clear()
                await self._serve_inputs()
                status = await self.status()
                left = CONTROL_POLL_S if deadline is None else min(CONTROL_POLL_S, deadline - time.monotonic())
                if status not in statuses or left <= 0:
                    return status
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await self._news.wait()
        finally:
            self.deadline += time.monotonic() - began
            await self._at_the_wheel_ends()
            await self._deps.slots.unpark()

    # -- a person at the wheel (orchestrator/control.py) ----------------------------------------

    async def _at_the_wheel_begins(self) -> None:
        """The run waits on its page: note its URL (the control audit's "before")."""
        await self._note_url()

    async def _at_the_wheel_ends(self) -> None:
        """The wait is over (resumed, decided, cancelled): whoever held the wheel has it no more."""
        redis, engine = self._deps.svc.redis, self._deps.svc.engine
        with contextlib.suppress(RedisError, OSError):
            await self._serve_inputs()
            await control.give_back(engine, redis, self._job_id, None, "the job went on")

    async def _note_url(self) -> None:
        page = self._page()
        if page is not None and not page.is_closed():
            with contextlib.suppress(RedisError, OSError):
                await self._deps.svc.redis.set(page_url_key(self._job_id), page.url, ex=24 * 3600)

    async def _serve_inputs(self) -> None:
        """Dispatch the inputs sent to this job's page, in order (Playwright's mouse and keyboard: CDP
        Input.dispatch* events); the text typed is never logged. Also gives back idle control."""
        if not self._input_news and time.monotonic() - self._checked_at < CONTROL_POLL_S:
            return
        self._input_news = False
        redis, engine = self._deps.svc.redis, self._deps.svc.engine
        try:
            inputs = await control.take_inputs(redis, self._job_id)
            await control.expire_idle(engine, redis, self._job_id)
        except (RedisError, OSError) as exc:
            log.warning("job %s: the inputs sent to its browser could not be read (%s)", self._job_id, exc)
            return
        page = self._page()
        if not inputs or page is None or page.is_closed():
            return
        for event in inputs:
            try:
                await _dispatch(page, event)
            except Exception as exc:  # noqa: BLE001 - a page that navigated away mid-input: the next one goes on
                log.warning(
                    "job %s: a %s input could not reach the page (%s)",
                    self._job_id,
                    event.get("type"),
                    type(exc).__name__,
                )
        await self._note_url()

    async def honour_pause(self) -> None:
        """At a step boundary: stop here while the job is paused (asked by signal, or seen by a poll)."""
        if not self._pause_requested and time.monotonic() - self._checked_at < CONTROL_POLL_S:
            return
        self._pause_requested, self._checked_at = False, time.monotonic()
        status = await self.status()
        if status is JobStatus.PAUSED:
            status = await self.wait_while({JobStatus.PAUSED}, None)
        if status is JobStatus.CANCELLED:
            self.cancelled = True

    # -- approvals -------------------------------------------------------------------------------

    async def ask(
        self,
        ctx: StepContext,
        message: str,
        seconds: float | None,
        on_timeout: str,
        deciders: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Put the job in waiting_for_approval on the same page and wait for the decision. `deciders`:
        the step's `approvers`, `required` and `remind_every` (orchestrator/approvers.py decides with them)."""
        requested = utcnow()
        deciders = deciders or {}
        approval: dict[str, Any] = {
            "step_id": ctx.step_id,
            "message": message,
            "requested_at": iso(requested),
            "timeout_s": seconds,
            "on_timeout": on_timeout,
            "captured": jsonable(ctx.captured, ctx.secrets),
            "approvers": deciders.get("approvers"),
            "required": deciders.get("required") or 1,
            "remind_every": deciders.get("remind_every"),
            "votes": [],
        }
        if self.rerun_of:  # a re-run asks again; the panel shows what was decided the last time
            approval["rerun_of"] = self.rerun_of
            if earlier := await self._earlier_decision(ctx.step_id):
                approval["earlier"] = earlier
        shot = await self._evidence(ctx)
        if shot is not None:
            approval.update(screenshot_url=artifact_url(self._job_id, shot["id"]), screenshot_sha256=shot["sha256"])
        await self._request_approval(approval, shot)
        status = await self.wait_while({JobStatus.WAITING_FOR_APPROVAL}, seconds)
        if status is JobStatus.WAITING_FOR_APPROVAL:
            status = await self._time_out_approval(seconds or 0, on_timeout)
        if status is JobStatus.CANCELLED:
            self.cancelled = True
            raise asyncio.CancelledError
        query = select(t.jobs.c.approval).where(t.jobs.c.id == self._job_id)
        decided = await self._deps.committer.read(lambda conn: conn.execute(query).scalar()) or {}
        if status is JobStatus.RUNNING:
            return {"decision": "approved", "by": decided.get("by"), "comment": decided.get("comment")}
        if decided.get("by") == "timeout":
            raise ApprovalRefused(str(decided.get("comment")))
        who = decided.get("by") or "the orchestrator"
        raise ApprovalRefused(f"Rejected by {who}" + (f": {decided['comment']}" if decided.get("comment") else "."))

    # -- handoffs --------------------------------------------------------------------------------

    async def hand_off(
        self, ctx: StepContext, message: str, seconds: float | None, until: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Pause the job for a person to act in its live browser, holding no worker slot, until `until`
        holds on the page (looked at every HANDOFF_LOOK_S), someone presses Resume, or `seconds` run out."""
        page = await ctx.page()
        handoff = {
            "step_id": ctx.step_id,
            "message": message,
            "requested_at": iso(utcnow()),
            "timeout_s": seconds,
            "until": until,
            "url_before": page.url,
        }
        writer = self._writer
        writer.quiet()  # the step is announced as waiting instead
        row = {**writer.step, "status": StepStatus.WAITING.value}
        await writer.write(
            HandOff(self._job_id, self._attempt, handoff),
            statements=[writer.update_step(row)],
            events=[writer.step_event(row)],
        )
        outcome, status = await self._wait_for_person(page, seconds, until)
        if status is JobStatus.CANCELLED:
            self.cancelled = True
            raise asyncio.CancelledError
        if outcome == "timed out":
            raise StepTimeout(f"Nobody finished the handoff within {seconds:g} s: {message}")
        return {"outcome": outcome, "url": page.url}

    async def _wait_for_person(
        self, page: Any, seconds: float | None, until: dict[str, Any] | None
    ) -> tuple[str, JobStatus]:
        """(how the handoff ended: done, resumed or timed out; the job's status then)."""
        began = time.monotonic()
        deadline = None if seconds is None else began + seconds
        self._deps.slots.park()
        await self._at_the_wheel_begins()
        try:
            status, looked = await self.status(), time.monotonic()
            while status is JobStatus.PAUSED:
                await self._serve_inputs()
                if until is not None and await _holds(page, until):
                    return "done", await self._end_handoff("done")
                if deadline is not None and time.monotonic() >= deadline:
                    return "timed out", await self._end_handoff("timed out")
                self._news.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(HANDOFF_LOOK_S):
                        await self._news.wait()
                if self._news.is_set() or time.monotonic() - looked >= CONTROL_POLL_S:
                    status, looked = await self.status(), time.monotonic()
            if status is JobStatus.RUNNING:
                await self._writer.write(HandoffDone(self._job_id, self._attempt, "resumed"))
            return "resumed", status
        finally:
            self.deadline += time.monotonic() - began
            await self._at_the_wheel_ends()
            await self._deps.slots.unpark()

    async def _end_handoff(self, outcome: str) -> JobStatus:
        await self._writer.write(HandoffDone(self._job_id, self._attempt, outcome))
        return await self.status()

    async def _earlier_decision(self, step_id: str) -> dict[str, Any] | None:
        """The decision the re-run job took at this approval step, if it got that far."""
        query = select(t.jobs.c.approval).where(t.jobs.c.id == self.rerun_of)
        earlier = await self._deps.committer.read(lambda conn: conn.execute(query).scalar())
        if not earlier or earlier.get("step_id") != step_id or not earlier.get("decision"):
            return None
        return {k: earlier.get(k) for k in ("decision", "by", "comment", "decided_at")}

    async def _evidence(self, ctx: StepContext) -> dict[str, Any] | None:
        """The screenshot an approver is shown (and whose hash the decision records)."""
        image = await self._snapshot()
        if image is None:
            return None
        return await self._deps.svc.store.save(
            self._job_id, "screenshot", f"{ctx.step_id}-approval.png", image, step_id=ctx.step_id, mime_type="image/png"
        )

    async def _request_approval(self, approval: dict[str, Any], shot: dict[str, Any] | None) -> None:
        writer = self._writer
        writer.quiet()  # the step is announced as waiting instead
        row = {**writer.step, "status": StepStatus.WAITING.value}
        statements: list[Statement] = [writer.update_step(row)]
        if shot is not None:
            statements.append((INSERT_ARTIFACT, shot))
        await writer.write(
            RequestApproval(self._job_id, self._attempt, approval),
            statements=statements,
            events=[writer.step_event(row, approval.get("screenshot_url"))],
        )

    async def _time_out_approval(self, seconds: float, on_timeout: str) -> JobStatus:
        decision = timeout_decision(seconds, on_timeout)
        await self._writer.write(TimeOutApproval(self._job_id, self._attempt, decision))
        return await self.status()
