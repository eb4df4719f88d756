"""The run loop of one job: claim it, run its steps with time limits and retries, end it.

A run is built from parts with one job each: the writer carries what it writes (worker/writer.py),
the control answers to people (worker/control.py), the session holds its browser (worker/session.py),
the watcher lets people see it (worker/watcher.py), the hold keeps its lease and slot (worker/hold.py).
for_each and run_runbook steps are the record loop's (worker/records.py) and the child run's
(worker/children.py); the record loop calls back here for each nested step it runs."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from playwright.async_api import Error as PlaywrightError

from orchestrator import logs, templating
from orchestrator.db.tables import utcnow
from orchestrator.errors import ApprovalRefused, StepError
from orchestrator.masking import forms, mask_text
from orchestrator.reaper import hand_back
from orchestrator.runbooks.schema import Runbook
from orchestrator.runbooks.steps import StepBase
from orchestrator.states import JobStatus, StepStatus
from orchestrator.tracing import RunTrace
from worker import triggers
from worker.children import ChildRun
from worker.context import StepContext
from worker.control import Control
from worker.deps import Deps
from worker.hold import Hold
from worker.masks import jsonable
from worker.ops import Claim, Finish
from worker.records import RecordLoop, is_loop
from worker.resume import Resume, where_to_start
from worker.session import Session
from worker.steps import StepOutcome, first_line, render_step, step_row, truthy
from worker.tally import Tally
from worker.watcher import Watcher
from worker.writer import RunWriter

log = logging.getLogger(__name__)

ACTION_GRACE_S = 1.0


class Executor:
    def __init__(self, deps: Deps, job_id: str, attempt: int, link: str | None = None) -> None:
        self.deps = deps
        self.job_id = job_id
        self.attempt = attempt
        self.link = link  # the traceparent of the job's enqueue, when it carried one (orchestrator/tracing.py)
        self.trace: RunTrace | None = None  # this run's spans, when tracing is on
        self.writer = RunWriter(job_id, attempt, deps.committer)
        self.watcher = Watcher(deps, job_id, attempt, self.writer)
        self.session = Session(deps, job_id, attempt, self.watcher, self.writer)
        self.control = Control(deps, job_id, attempt, self.writer, self.session.snapshot, lambda: self.session.page)
        self.hold = Hold(deps, job_id, attempt)
        self.tally = Tally()
        self.records = RecordLoop(self.writer, self.control, self.session, self.tally, deps.committer, self._nested)
        self.child = ChildRun(deps, job_id, None, self.writer)  # its owner is the job's, once read
        self._current: Any = None  # the current step after templating, for its diagnostics

    # -- what the worker asks of a run (worker/deps.py: Running) ----------------------------------

    @property
    def leased(self) -> bool:
        return self.hold.leased

    def signal(self, action: str) -> None:
        self.control.signal(action)

    def fenced_out(self) -> None:
        """A newer attempt of this job runs elsewhere: write nothing more and stop."""
        self.hold.superseded = True
        self.writer.fence.broken = True
        self.control.cancel()

    @property
    def halted(self) -> bool:
        """Cancelled, or no longer this run's to write."""
        return self.control.cancelled or self.writer.fenced

    # -- the job ---------------------------------------------------------------------------------

    async def run(self) -> None:
        # Every line logged during the run names the job, attempt and worker, and masks its secrets.
        bound = logs.bind(job_id=self.job_id, attempt=self.attempt, worker=self.deps.robot)
        try:
            await self._run()
        finally:
            if self.trace is not None:
                self.trace.end()
            logs.reset(bound)

    async def _run(self) -> None:
        claimed = await self._claim()
        if claimed is None:
            return
        runbook, job, resume = claimed
        if self.deps.svc.tracing is not None:
            self.trace = self.deps.svc.tracing.run(self.job_id, self.attempt, job, self.link)
        log.info(
            "job %s of %s v%s: attempt %d started", self.job_id, job["runbook"], job["runbook_version"], self.attempt
        )
        self.hold.lease_soon()
        self.deps.running[self.job_id] = self
        handed_back = False
        try:
            await self._execute(runbook, job, resume)
        except asyncio.CancelledError:
            if not self.control.cancelled:  # the worker is stopping: hand the job to another worker now
                handed_back = True
                await self.writer.flush()
                await self.hold.give_slot()  # the next attempt takes its turn in line again
                await hand_back(self.deps.svc.engine, self.deps.svc.redis, self.job_id, self.attempt, job["priority"])
            raise
        finally:
            self.deps.running.pop(self.job_id, None)
            await self.hold.give_slot()  # first: the video below may take a while
            frames = await self.watcher.stop()
            await self.session.close()
            await self.watcher.save_video([] if handed_back else frames)  # completed, failed or cancelled: how
            await self.writer.settle()
            await self.hold.drop_lease()

    async def _claim(self) -> tuple[Runbook, dict[str, Any], Resume] | None:
        """Read the job and, when it is queued, move it to running without waiting for the commit:
        the move is a compare-and-set, and if it loses (the job was cancelled meanwhile) the fence
        drops every later write of this run and the run stops."""
        started = await where_to_start(self.deps, self.job_id, self.attempt)
        if started is None:
            return None
        job, runbook, resume = started
        status = JobStatus(job["status"])
        if not await self.hold.take_slot(runbook, job, status):
            return None
        if status in (JobStatus.SCHEDULED, JobStatus.QUEUED):
            claim = self.writer.write(Claim(self.job_id, self.attempt, self.deps.robot, job["started_at"]))
            claim.add_done_callback(self._lost_claim)
            self.deps.counts.started(job, claim)
        elif status is not JobStatus.RUNNING:
            return None  # waiting on a person: nothing to run
        self.session.checkpoint = self.session.unseal(job["checkpoint"])
        job["captured"] = dict(resume.captured)
        return runbook, job, resume

    def _lost_claim(self, future: asyncio.Future[Any]) -> None:
        if self.writer.fenced or (not future.cancelled() and future.exception() is not None):
            log.info("job %s changed before this worker's claim committed; stopping", self.job_id)
            self.control.cancel()

    async def _execute(self, runbook: Runbook, job: dict[str, Any], resume: Resume) -> None:
        started = time.monotonic()
        data = job["data"] or {}
        self.watcher.record_video(bool(job.get("video")) or runbook.settings.video)
        only = data.get("only_records")
        self.records.only = frozenset(map(str, only)) if isinstance(only, list) else None
        inputs = {**job["inputs"], **self.deps.svc.box.open(job["secret_inputs"])}
        secrets = forms(v for k, v in inputs.items() if k in runbook.inputs and runbook.inputs[k].secret)
        self.writer.secrets = secrets
        logs.bind(secrets=secrets)  # undone with the run's own bind
        scope: dict[str, Any] = {
            "inputs": inputs,
            "captured": job["captured"],
            "job": {"id": self.job_id, "runbook": job["runbook"], "version": job["runbook_version"]},
            "server": {"url": self.deps.svc.settings.public_url},
        }
        # The job's time limit bounds each step's, so the step it runs out in ends failed with a reason.
        self.control.deadline = started + runbook.settings.timeout
        self.control.rerun_of = data.get("rerun_of")
        self.child.owner = job["owner"]  # the human who owns the job: its children and triggers are theirs

        async def again(step: StepBase) -> None:
            await self._apply_again(step, scope, secrets, runbook)

        restore_at = await self.session.reopen(runbook, resume.position, again)
        for position, step in enumerate(runbook.steps):
            if position in resume.done:
                if position == restore_at:  # the re-run's page, reached after the approval it asked again
                    await self.session.restore(runbook, position + 1, again)
                elif position > resume.position:  # carried over by a re-run, after an approval asked again
                    await self.session.replay(step, again)
                continue
            await self.control.honour_pause()
            if self.halted:
                break
            if time.monotonic() >= self.control.deadline:
                message = f"The job ran longer than its time limit of {runbook.settings.timeout:g} s."
                self.tally.first_error = self.tally.first_error or ("", message)
                break
            outcome = await self._run_step(position, step, runbook, scope, secrets)
            if outcome.ends_job(step):
                break
        else:
            await self.control.honour_pause()
        await self._finish(runbook, scope, time.monotonic() - started, secrets)

    async def _finish(self, runbook: Runbook, scope: dict[str, Any], elapsed: float, secrets: frozenset[str]) -> None:
        end = self.tally.end(runbook, scope, elapsed, secrets, self.watcher.video_started_at)
        finished = self.writer.write(Finish(self.job_id, self.attempt, end.status, end.values, end.report))
        status = JobStatus.CANCELLED.value if self.control.cancelled else end.status.value
        log.info("job %s %s in %.3f s", self.job_id, status, elapsed)
        if self.trace is not None:
            self.trace.finished(status, mask_text(end.values["error_message"] or "", secrets))  # unmasked until written
        self.deps.counts.finished(runbook.name, elapsed, finished)
        if runbook.triggers and not self.control.cancelled:
            await triggers.fire(self.deps.svc, self.writer, self.child.owner, runbook, scope, end, finished)

    # -- one step --------------------------------------------------------------------------------

    async def _run_step(
        self, position: int, step: StepBase, runbook: Runbook, scope: dict[str, Any], secrets: frozenset[str]
    ) -> StepOutcome:
        row = step_row(step, self.attempt)
        self.writer.begin(row)
        bound = logs.bind(step_id=step.id)
        if self.trace is not None:
            self.trace.step(step.id, step.action)
        began = time.monotonic()
        self._current = None
        self.watcher.casting_step(step.id)
        ctx = self._context_for(step, scope, secrets)
        before = dict(scope["captured"])
        try:
            outcome, _ = await self._attempts(step, runbook, scope, ctx)
        finally:
            self.writer.quiet()
        # What the step saved into `captured`: shown on the timeline, and what a resumed run rebuilds from.
        saved = {k: v for k, v in scope["captured"].items() if k not in before or before[k] is not v}
        failed = outcome.status is StepStatus.FAILED
        page = self.session.page
        if (
            outcome.status is not StepStatus.SKIPPED
            and step.browser
            and page
            and (step.screenshot == "after" or failed)
        ):
            await self.session.screenshot(ctx, f"{step.id}.png")
        if failed and step.browser:
            row["diagnostics"] = await self.watcher.diagnose(self.session.page, self._current or step, ctx, secrets)
        row.update(
            status=outcome.status.value,
            finished_at=utcnow(),
            duration_s=round(time.monotonic() - began, 3),
            retries=ctx.retries,
            captured=jsonable(saved, secrets) if saved else None,
            error=outcome.error,
        )
        self.tally.count(outcome, ctx.retries, step.id, fatal=outcome.ends_job(step))
        if failed:
            log.warning("step %s failed after %d retries: %s", step.id, ctx.retries, outcome.error)
        if self.trace is not None:
            self.trace.step_ended(outcome.status.value, ctx.retries, ctx.mask_text(outcome.error or ""))
        checkpoint = await self.session.new_checkpoint(position) if outcome.status is StepStatus.SUCCESS else None
        self.deps.counts.step(row, self.writer.record_step(row, ctx, checkpoint), self.writer.fence)
        logs.reset(bound)
        return outcome

    async def _nested(
        self, step: StepBase, runbook: Runbook, scope: dict[str, Any], secrets: frozenset[str]
    ) -> tuple[StepOutcome, StepContext]:
        """A step inside a for_each (the record loop's callback): no row of its own."""
        ctx = self._context_for(step, scope, secrets)
        outcome, _ = await self._attempts(step, runbook, scope, ctx)
        return outcome, ctx

    async def _attempts(
        self, step: StepBase, runbook: Runbook, scope: dict[str, Any], ctx: StepContext
    ) -> tuple[StepOutcome, Any]:
        prepared = self._prepare(step, scope, ctx)
        if isinstance(prepared, StepOutcome):
            return prepared, None
        typed, fn = prepared
        self._current = typed
        if typed.browser and not await self.writer.durable(ctx):
            return StepOutcome(StepStatus.CANCELLED, "A newer attempt of this job runs elsewhere."), None
        if is_loop(typed) or typed.waits_for_person or typed.untimed:  # loops, people and child jobs set the pace
            return await self._untimed(ctx, self._looping(runbook, scope) if is_loop(typed) else fn, typed)
        return await self._timed(step, typed, fn, runbook, ctx)

    def _looping(self, runbook: Runbook, scope: dict[str, Any]) -> Any:
        return lambda ctx, step: self.records.run(step, runbook, scope, ctx.secrets)

    def _prepare(self, step: StepBase, scope: dict[str, Any], ctx: StepContext) -> StepOutcome | tuple[StepBase, Any]:
        """The rendered step and its action, or the outcome that ends it before it runs."""
        try:
            if step.when is not None and not truthy(templating.render(step.when, scope)):
                return StepOutcome(StepStatus.SKIPPED)
            typed = render_step(step, scope)
        except StepError as exc:
            return StepOutcome(StepStatus.FAILED, ctx.mask_text(exc.message))
        if is_loop(typed):
            return typed, None
        if typed.action not in self.deps.registry:
            return StepOutcome(StepStatus.FAILED, f"The action {typed.action} is not supported by this worker.")
        return typed, self.deps.registry.get(typed.action)[1]

    async def _timed(
        self, step: StepBase, typed: StepBase, fn: Any, runbook: Runbook, ctx: StepContext
    ) -> tuple[StepOutcome, Any]:
        """The step's action with its time limit, retried as the step or runbook says."""
        step_timeout = float(typed.timeout or runbook.settings.step_timeout)
        retries = int(typed.retries if typed.retries is not None else runbook.settings.retries)
        error = ""
        for attempt in range(retries + 1):
            timeout = min(step_timeout, self.control.deadline - time.monotonic())
            if timeout <= 0:
                error = f"The job reached its time limit of {runbook.settings.timeout:g} s."
                break
            ctx.deadline = time.monotonic() + timeout
            try:
                if typed.screenshot == "before" and typed.browser:
                    await self.session.screenshot(ctx, f"{step.id}-before.png")
                # A little longer than the action's own deadline, so its specific error
                # ("No element matches '#x'") reaches the user rather than a bare timeout.
                async with asyncio.timeout(timeout + ACTION_GRACE_S):
                    result = await self.control.interruptible(fn(ctx, typed))
                await self.session.check_where_the_page_went(since=self.writer.step.get("started_at"))
                return StepOutcome(StepStatus.SUCCESS), result
            except asyncio.CancelledError:
                if not self.control.cancelled:
                    raise
                return StepOutcome(StepStatus.CANCELLED, "Cancelled while running."), None
            except TimeoutError:
                error = (
                    f"The step did not finish within {timeout:g} s."
                    if timeout == step_timeout
                    else f"The job reached its time limit of {runbook.settings.timeout:g} s during this step."
                )
            except (StepError, PlaywrightError) as exc:
                error = ctx.mask_text(exc.message if isinstance(exc, StepError) else first_line(exc))
            except Exception as exc:  # noqa: BLE001 - a bug or a missing browser fails the step, not the worker
                log.exception("job %s step %s raised", self.job_id, step.id)
                error = ctx.mask_text(first_line(exc))
            if attempt < retries:
                ctx.retries += 1
                ctx.log("warning", f"Step {step.id} failed ({error}); retrying.")
        return StepOutcome(StepStatus.FAILED, error), None

    async def _untimed(self, ctx: StepContext, fn: Any, typed: StepBase) -> tuple[StepOutcome, Any]:
        """A step that waits for a person (approval) or loops over records: no step time limit, no retries."""
        try:
            return StepOutcome(StepStatus.SUCCESS), await self.control.interruptible(fn(ctx, typed))
        except asyncio.CancelledError:
            if not self.control.cancelled:
                raise
            what = "waiting for approval" if typed.waits_for_person else "waiting" if typed.untimed else "running"
            return StepOutcome(StepStatus.CANCELLED, f"Cancelled while {what}."), None
        except StepError as exc:
            refused = isinstance(exc, ApprovalRefused)
            return StepOutcome(StepStatus.FAILED, ctx.mask_text(exc.message), refused), None

    def _context_for(self, step: StepBase, scope: dict[str, Any], secrets: frozenset[str]) -> StepContext:
        return StepContext(
            job_id=self.job_id,
            step_id=step.id,
            get_page=self.session.open,
            store=self.deps.svc.store,
            captured=scope["captured"],
            secrets=secrets,
            masks=self.session.masks,
            deadline=time.monotonic(),
            load_artifact=self.session.load_artifact,
            ask=self.control.ask,
            hand_off=self.control.hand_off,
            policy=self.deps.policy,
            run_child=self.child.run,
        )

    async def _apply_again(
        self, step: StepBase, scope: dict[str, Any], secrets: frozenset[str], runbook: Runbook
    ) -> None:
        """A page-local step (fill, select, check, uncheck) an earlier run did, applied to this run's
        page again without a record of its own. Any other step that was done stays done."""
        if step.page_local and self.session.page is not None:
            ctx = self._context_for(step, scope, secrets)
            ctx.deadline = time.monotonic() + runbook.settings.step_timeout
            await self.deps.registry.get(step.action)[1](ctx, render_step(step, scope))
