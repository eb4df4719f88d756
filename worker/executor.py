"""The run loop of one job: claim it, run its steps with timeouts and retries, record everything."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from playwright.async_api import BrowserContext, Page
from playwright.async_api import Error as PlaywrightError
from pydantic import ValidationError
from redis.exceptions import RedisError
from sqlalchemy import select

from orchestrator import jobs, templating
from orchestrator.db import tables as t
from orchestrator.db.engine import reading
from orchestrator.db.tables import utcnow
from orchestrator.errors import ApprovalRefused, OrchestratorError, StepError
from orchestrator.events import Pending
from orchestrator.jobs import JobRequest
from orchestrator.limits import place
from orchestrator.masking import forms, mask_value
from orchestrator.reaper import hand_back
from orchestrator.runbooks.catalog import load_version
from orchestrator.runbooks.schema import Runbook
from orchestrator.runbooks.steps import BASE_FIELDS, StepBase
from orchestrator.states import JobStatus, StepStatus
from orchestrator.views import artifact_url, iso, step_view
from worker.children import ChildrenMixin
from worker.committer import Fence, Statement, Write
from worker.context import StepContext
from worker.deps import Deps
from worker.people import PeopleMixin
from worker.records import RecordsMixin, is_loop, summary_of_records
from worker.rows import (
    INSERT_ARTIFACT,
    READ_AGAIN,
    UPDATE_CHECKPOINT,
    UPDATE_STEP,
    Claim,
    Finish,
    Resume,
    first_line,
    jsonable,
    read_job,
    render_outputs,
    summary_of,
    truthy,
)
from worker.watching import WatchingMixin

log = logging.getLogger(__name__)

RUNNING_NOTICE_S = 0.05
#: A run takes its lease this long after it starts: the reaper acts only on a lease missing for
#: seconds, so a run that ends sooner never needs one (two Redis round trips saved per short job).
LEASE_AFTER_S = 0.05
ACTION_GRACE_S = 1.0
#: The fields every step has that may hold templates (`name` is also the screenshot action's file name).
RENDERED_BASE = ("timeout", "retries", "name")


@dataclass
class StepOutcome:
    status: StepStatus
    error: str | None = None
    #: A rejected approval: the job ends, even where continue_on_error or a loop would go on.
    refused: bool = False

    def ends_job(self, step: StepBase) -> bool:
        return self.status is StepStatus.FAILED and (self.refused or not step.continue_on_error)


@dataclass
class Tally:
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    retries: int = 0
    first_error: tuple[str, str] | None = None  # (step id, message) of the failure that ended the job
    warnings: bool = False
    counts: dict[str, int] = field(default_factory=lambda: {"total": 0, "succeeded": 0, "failed": 0, "skipped": 0})
    failed_records: list[tuple[str, str]] = field(default_factory=list)  # (record id, error), in order


class Executor(PeopleMixin, RecordsMixin, ChildrenMixin, WatchingMixin):
    def __init__(self, deps: Deps, job_id: str, attempt: int) -> None:
        self.deps = deps
        self.job_id = job_id
        self.attempt = attempt
        self.cancelled = False
        self._context: BrowserContext | None = None
        self._page: Page | None = None
        self._masks: list[Any] = []
        self._pending: list[asyncio.Future[Any]] = []
        self._last: Write | None = None  # this run's latest write
        self._step_task: asyncio.Task[Any] | None = None
        self._checkpoint: dict[str, Any] | None = None
        self._fence = Fence(attempt)
        self._job_deadline = float("inf")
        self._news = asyncio.Event()
        self._pause_requested = False
        self._checked_at = time.monotonic()
        self._row: dict[str, Any] = {}
        self._notice: asyncio.TimerHandle | None = None
        self._lease: asyncio.Task[None] | None = None
        self._limited: tuple[str, int] | None = None  # (runbook, its concurrency) when this run holds a slot
        self._superseded = False  # a newer attempt holds the lease (and the job's slot)
        self.tally = Tally()
        self._current: Any = None  # the current step after templating, for its diagnostics
        self._unsynced: asyncio.Future[Any] | None = None  # the write of the last browser step, until committed
        self._secrets: frozenset[str] = frozenset()  # every form of the job's secret inputs, once known
        self._rerun_of: str | None = None  # the job this one re-runs (its approvals are asked again)
        self._owner: str | None = None  # the human who owns the job: its children and triggers are theirs
        self._init_watching()

    # -- writing ---------------------------------------------------------------------------------

    def _write(
        self, *ops: Any, statements: list[Statement] | None = None, events: list[Pending] | None = None
    ) -> asyncio.Future[Any]:
        if self._secrets:  # whatever a step, a template or a page said, no secret leaves the run
            ops, statements, events = self._masked(ops, statements or [], events or [])
        last = self._last
        if not ops and last is not None and not last.taken and last.done is not None:
            # The run's previous write still waits for the committer: this one rides along (fewer
            # writes to carry to the writer and apply; the order within the job is the same).
            last.statements.extend(statements or ())
            last.events.extend(events or ())
            return last.done
        write = Write(self.job_id, list(ops), events or [], fence=self._fence, statements=statements or [])
        future = self.deps.committer.submit(write)
        self._last = write
        self._pending.append(future)
        return future

    def _masked(
        self, ops: tuple[Any, ...], statements: list[Statement], events: list[Pending]
    ) -> tuple[tuple[Any, ...], list[Statement], list[Pending]]:
        secrets = self._secrets
        ops = tuple(
            dataclasses.replace(
                op,
                **{
                    f.name: mask_value(v, secrets, ids=True)
                    for f in dataclasses.fields(op)
                    if isinstance(v := getattr(op, f.name), dict)
                },
            )
            for op in ops
        )
        statements = [(statement, mask_value(params, secrets, ids=True)) for statement, params in statements]
        events = [Pending(e.job_id, e.type, mask_value(e.data, secrets, ids=True)) for e in events]
        return ops, statements, events

    async def _flush(self) -> None:
        pending, self._pending = self._pending, []
        await asyncio.gather(*pending)

    # -- the job ---------------------------------------------------------------------------------

    async def run(self) -> None:
        claimed = await self._claim()
        if claimed is None:
            return
        runbook, job, resume = claimed
        lease_timer = asyncio.get_running_loop().call_later(LEASE_AFTER_S, self._take_lease)
        self.deps.running[self.job_id] = self
        handed_back = False
        try:
            await self._execute(runbook, job, resume)
        except asyncio.CancelledError:
            if not self.cancelled:  # the worker is stopping: hand the job to another worker now
                handed_back = True
                await self._flush()
                await self._give_slot()  # the next attempt takes its turn in line again
                await hand_back(self.deps.svc.engine, self.deps.svc.redis, self.job_id, self.attempt, job["priority"])
            raise
        finally:
            self.deps.running.pop(self.job_id, None)
            await self._give_slot()  # first: the video below may take a while
            frames = await self._stop_watching()
            await self._close_browser()
            await self._save_video([] if handed_back else frames)  # completed, failed or cancelled: how
            await self._settle()
            lease_timer.cancel()
            if self._lease is not None:
                await asyncio.shield(self._lease)
                await self.deps.leases.drop(self.job_id, self.attempt)

    async def _give_slot(self) -> None:
        """Give back this run's slot of its runbook's concurrency, unless a newer attempt of the job
        (which holds the same slot) has taken over."""
        limited, self._limited = self._limited, None
        if limited is not None and not self._superseded:
            with contextlib.suppress(RedisError, OSError):
                await self.deps.limits.give(*limited, self.job_id)

    def _take_lease(self) -> None:
        self._lease = asyncio.create_task(self.deps.leases.take(self.job_id, self.attempt))

    @property
    def leased(self) -> bool:
        """Whether this run has taken its lease (the heartbeat renews only those)."""
        return self._lease is not None

    def fenced_out(self) -> None:
        """A newer attempt of this job runs elsewhere: write nothing more and stop."""
        self._superseded = True
        self._fence.broken = True
        self.cancel()

    async def _settle(self) -> None:
        """Hand the last writes to the committer without holding the worker slot until they commit;
        the committer commits them in order and drains before the worker exits. Unless it is far
        behind: then the run waits for them, so the worker takes no more jobs than it can record
        (and the reconciler never sees a finished job still queued in the database for long)."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.add_done_callback(self._report_failure)
        if pending and self.deps.committer.behind:
            await asyncio.wait(pending)

    def _lost_claim(self, future: asyncio.Future[Any]) -> None:
        if self._fence.broken or (not future.cancelled() and future.exception() is not None):
            log.info("job %s changed before this worker's claim committed; stopping", self.job_id)
            self.cancel()

    def _report_failure(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            log.error("job %s: a write failed: %s", self.job_id, future.exception())

    async def _claim(self) -> tuple[Runbook, dict[str, Any], Resume] | None:
        """Read the job and, when it is queued, move it to running without waiting for the commit:
        the move is a compare-and-set, and if it loses (the job was cancelled meanwhile) the fence
        drops every later write of this run and the run stops."""
        job_id, attempt = self.job_id, self.attempt
        row, resume = await self.deps.committer.read(lambda conn: read_job(conn, job_id, whole=False))
        if resume is READ_AGAIN:  # the row and its steps from one snapshot
            row, resume = await self.deps.committer.read(lambda conn: read_job(conn, job_id), True)
        if row is None or row["attempt"] != attempt:
            return None
        job, status = dict(row), JobStatus(row["status"])
        if job["version_id"] not in self.deps.versions:  # versions never change: read each once
            self.deps.versions[job["version_id"]] = await load_version(self.deps.svc.engine, job["version_id"])
        runbook = self.deps.versions[job["version_id"]].runbook
        if not await self._slot_of_runbook(runbook, job, status):
            return None
        if status in (JobStatus.SCHEDULED, JobStatus.QUEUED):
            claim = self._write(Claim(job_id, attempt, self.deps.robot, job["started_at"]))
            claim.add_done_callback(self._lost_claim)
        elif status is not JobStatus.RUNNING:
            return None  # waiting on a person: nothing to run
        self._checkpoint = self._unseal(job["checkpoint"])
        job["captured"] = dict(resume.captured)
        return runbook, job, resume

    async def _slot_of_runbook(self, runbook: Runbook, job: dict[str, Any], status: JobStatus) -> bool:
        """settings.concurrency: whether this job may run now; if not, it waits in line, still queued."""
        limit = runbook.settings.concurrency
        if status.finished:  # cancelled while in line: pass its turn on
            if limit:
                await self.deps.limits.give(job["runbook"], limit, self.job_id)
            return False
        if not limit or status not in (JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.RUNNING):
            return True
        order = place(job["scheduled_at"] or job["created_at"], job["priority"])
        if not await self.deps.limits.take(job["runbook"], limit, self.job_id, order):
            return False
        self._limited = (job["runbook"], limit)
        return True

    async def _execute(self, runbook: Runbook, job: dict[str, Any], resume: Resume) -> None:
        started = time.monotonic()
        self._record_video(bool(job.get("video")) or runbook.settings.video)
        only = (job["data"] or {}).get("only_records")
        self._only_records = frozenset(map(str, only)) if isinstance(only, list) else None
        inputs = {**job["inputs"], **self.deps.svc.box.open(job["secret_inputs"])}
        secrets = forms(v for k, v in inputs.items() if k in runbook.inputs and runbook.inputs[k].secret)
        self._secrets = secrets
        scope: dict[str, Any] = {
            "inputs": inputs,
            "captured": job["captured"],
            "job": {"id": self.job_id, "runbook": job["runbook"], "version": job["runbook_version"]},
            "server": {"url": self.deps.svc.settings.public_url},
        }
        # The job's time limit bounds each step's, so the step it runs out in ends failed with a reason.
        self._job_deadline = started + runbook.settings.timeout
        self._rerun_of = (job["data"] or {}).get("rerun_of")
        self._owner = job["owner"]
        restore_at = await self._restore_or_defer(runbook, scope, secrets, resume.position)
        for position, step in enumerate(runbook.steps):
            if position in resume.done:
                if position == restore_at:  # the re-run's page, reached after the approval it asked again
                    await self._restore(runbook, scope, secrets, position + 1)
                elif position > resume.position:  # carried over by a re-run, after an approval asked again
                    await self._replay(step, scope, secrets, runbook)
                continue
            await self._honour_pause()
            if self.cancelled or self._fence.broken:
                break
            if time.monotonic() >= self._job_deadline:
                message = f"The job ran longer than its time limit of {runbook.settings.timeout:g} s."
                self.tally.first_error = self.tally.first_error or ("", message)
                break
            outcome = await self._run_step(position, step, runbook, scope, secrets)
            if outcome.ends_job(step):
                break
        else:
            await self._honour_pause()
        await self._finish(runbook, scope, time.monotonic() - started, secrets)

    # -- one step --------------------------------------------------------------------------------

    async def _run_step(
        self, position: int, step: StepBase, runbook: Runbook, scope: dict[str, Any], secrets: frozenset[str]
    ) -> StepOutcome:
        row: dict[str, Any] = {
            "step_id": step.id,
            "name": step.name,
            "action": step.action,
            "status": StepStatus.RUNNING.value,
            "started_at": utcnow(),
            "finished_at": None,
            "duration_s": None,
            "retries": 0,
            "attempt": self.attempt,
            "captured": None,
            "error": None,
            "diagnostics": None,
        }
        # A step that ends within RUNNING_NOTICE_S is written once, when it ends; a longer one is
        # announced as running then. Writes per step are where throughput goes.
        self._notice = notice = asyncio.get_running_loop().call_later(
            RUNNING_NOTICE_S,
            lambda: self._write(statements=[self._update_step(dict(row))], events=[self._step_event(row)]),
        )
        began = time.monotonic()
        self._row = row
        self._current = None
        self._casting_step(step.id)
        ctx = self._context_for(step, scope, secrets)
        before = dict(scope["captured"])
        try:
            outcome, _ = await self._attempts(step, runbook, scope, ctx)
        finally:
            notice.cancel()
        # What the step saved into `captured`: shown on the timeline, and what a resumed run rebuilds from.
        saved = {k: v for k, v in scope["captured"].items() if k not in before or before[k] is not v}
        failed = outcome.status is StepStatus.FAILED
        if (
            outcome.status is not StepStatus.SKIPPED
            and step.browser
            and self._page
            and (step.screenshot == "after" or failed)
        ):
            await self._screenshot(ctx, f"{step.id}.png")
        if failed and step.browser:
            row["diagnostics"] = await self._diagnose(self._current or step, ctx, secrets)
        row.update(
            status=outcome.status.value,
            finished_at=utcnow(),
            duration_s=round(time.monotonic() - began, 3),
            retries=ctx.retries,
            captured=jsonable(saved, secrets) if saved else None,
            error=outcome.error,
        )
        self._count(outcome, ctx.retries, step.id, fatal=outcome.ends_job(step))
        checkpoint = await self._new_checkpoint(position) if outcome.status is StepStatus.SUCCESS else None
        self._record_step(row, ctx, checkpoint)
        return outcome

    async def _attempts(
        self, step: StepBase, runbook: Runbook, scope: dict[str, Any], ctx: StepContext
    ) -> tuple[StepOutcome, Any]:
        prepared = self._prepare(step, scope, ctx)
        if isinstance(prepared, StepOutcome):
            return prepared, None
        typed, fn = prepared
        self._current = typed
        if typed.browser and not await self._durable(ctx):
            return StepOutcome(StepStatus.CANCELLED, "A newer attempt of this job runs elsewhere."), None
        if is_loop(typed) or typed.waits_for_person or typed.untimed:  # loops, people and child jobs set the pace
            return await self._untimed(ctx, self._looping(runbook, scope) if is_loop(typed) else fn, typed)
        return await self._timed(step, typed, fn, runbook, ctx)

    async def _timed(
        self, step: StepBase, typed: StepBase, fn: Any, runbook: Runbook, ctx: StepContext
    ) -> tuple[StepOutcome, Any]:
        """The step's action with its time limit, retried as the step or runbook says."""
        step_timeout = float(typed.timeout or runbook.settings.step_timeout)
        retries = int(typed.retries if typed.retries is not None else runbook.settings.retries)
        error = ""
        for attempt in range(retries + 1):
            left_for_job = self._job_deadline - time.monotonic()
            timeout = min(step_timeout, left_for_job)
            if timeout <= 0:
                error = f"The job reached its time limit of {runbook.settings.timeout:g} s."
                break
            ctx.deadline = time.monotonic() + timeout
            try:
                if typed.screenshot == "before" and typed.browser:
                    await self._screenshot(ctx, f"{step.id}-before.png")
                self._step_task = asyncio.create_task(fn(ctx, typed))
                # A little longer than the action's own deadline, so its specific error
                # ("No element matches '#x'") reaches the user rather than a bare timeout.
                async with asyncio.timeout(timeout + ACTION_GRACE_S):
                    result = await self._step_task
                await self._check_where_the_page_went()
                return StepOutcome(StepStatus.SUCCESS), result
            except asyncio.CancelledError:
                if not self.cancelled:
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
            finally:
                self._step_task = None
            if attempt < retries:
                ctx.retries += 1
                ctx.log("warning", f"Step {step.id} failed ({error}); retrying.")
        return StepOutcome(StepStatus.FAILED, error), None

    def _looping(self, runbook: Runbook, scope: dict[str, Any]) -> Any:
        return lambda ctx, step: self._for_each(step, runbook, scope, ctx.secrets)

    def _prepare(self, step: StepBase, scope: dict[str, Any], ctx: StepContext) -> StepOutcome | tuple[StepBase, Any]:
        """The rendered step and its action, or the outcome that ends it before it runs."""
        try:
            if step.when is not None and not truthy(templating.render(step.when, scope)):
                return StepOutcome(StepStatus.SKIPPED)
            typed = self._typed(step, scope)
        except StepError as exc:
            return StepOutcome(StepStatus.FAILED, ctx.mask_text(exc.message))
        if is_loop(typed):
            return typed, None
        if typed.action not in self.deps.registry:
            return StepOutcome(StepStatus.FAILED, f"The action {typed.action} is not supported by this worker.")
        return typed, self.deps.registry.get(typed.action)[1]

    async def _untimed(self, ctx: StepContext, fn: Any, typed: StepBase) -> tuple[StepOutcome, Any]:
        """A step that waits for a person (approval) or loops over records: no step time limit, no retries."""
        try:
            self._step_task = asyncio.create_task(fn(ctx, typed))
            return StepOutcome(StepStatus.SUCCESS), await self._step_task
        except asyncio.CancelledError:
            if not self.cancelled:
                raise
            what = "waiting for approval" if typed.waits_for_person else "waiting" if typed.untimed else "running"
            return StepOutcome(StepStatus.CANCELLED, f"Cancelled while {what}."), None
        except StepError as exc:
            refused = isinstance(exc, ApprovalRefused)
            return StepOutcome(StepStatus.FAILED, ctx.mask_text(exc.message), refused), None
        finally:
            self._step_task = None

    def _typed(self, step: StepBase, scope: dict[str, Any]) -> StepBase:
        """Render the step's templates and validate the result against the action's model.
        A step without templates is already what it renders to."""
        if step.is_static():
            return step
        raw = step.model_dump(by_alias=True, exclude={"when", *step.lazy})
        lazy = {name: getattr(step, name) for name in step.lazy}
        rendered = templating.render(
            {k: v for k, v in raw.items() if k not in BASE_FIELDS or k in RENDERED_BASE}, scope
        )
        base = {k: v for k, v in raw.items() if k in BASE_FIELDS and k not in RENDERED_BASE}
        try:
            return type(step).model_validate({**base, **rendered, **lazy})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'][:1])) or 'step'}: {e['msg']}" for e in exc.errors()[:3])
            raise StepError(f"After templating, the step is not valid: {problems}.") from None

    def _context_for(self, step: StepBase, scope: dict[str, Any], secrets: frozenset[str]) -> StepContext:
        return StepContext(
            job_id=self.job_id,
            step_id=step.id,
            get_page=self._get_page,
            store=self.deps.svc.store,
            captured=scope["captured"],
            secrets=secrets,
            masks=self._masks,
            deadline=time.monotonic(),
            load_artifact=self._load_artifact,
            ask=self._ask,
            policy=self.deps.policy,
            run_child=self._run_child,
        )

    async def _get_page(self) -> Page:
        if self._page is None or self._page.is_closed():
            self._context = await self.deps.browsers.new_context()
            self._page = await self._context.new_page()
            await self._watch_page(self._page)
        return self._page

    async def _screenshot(self, ctx: StepContext, name: str) -> None:
        try:
            assert self._page is not None
            image = await self._page.screenshot(mask=self._masks, timeout=5000)
        except (PlaywrightError, AssertionError) as exc:
            ctx.log("warning", f"No screenshot after step {ctx.step_id}: {first_line(exc)}")
            return
        ctx.save("screenshot", name, image, "image/png")

    async def _load_artifact(self, artifact_id: str) -> tuple[dict[str, Any], bytes]:
        await self._flush()  # an artifact saved by an earlier step may still be on its way
        async with reading(self.deps.svc.engine) as conn:
            row = (
                (
                    await conn.execute(
                        select(t.artifacts).where(t.artifacts.c.id == artifact_id, t.artifacts.c.job_id == self.job_id)
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise StepError(f"This job has no file with the id {artifact_id}.")
        return dict(row), self.deps.svc.store.path_of(row["path"]).read_bytes()

    # -- recording -------------------------------------------------------------------------------

    def _step_event(self, row: dict[str, Any], screenshot: str | None = None) -> Pending:
        step = step_view({**row, "job_id": self.job_id}, screenshot)
        return Pending(self.job_id, "step", {"job_id": self.job_id, "step": step})

    def _update_step(self, row: dict[str, Any]) -> Statement:
        values = {k: v for k, v in row.items() if k not in ("step_id", "name", "action")}
        return UPDATE_STEP, {"b_job": self.job_id, "b_step": row["step_id"], **values}

    def _record_step(self, row: dict[str, Any], ctx: StepContext, checkpoint: dict[str, Any] | None) -> None:
        shots = [a for a in ctx.artifacts if a["kind"] == "screenshot"]
        shot_url = artifact_url(self.job_id, shots[-1]["id"]) if shots else None
        events = [self._step_event(row, shot_url)]
        events += [
            Pending(
                self.job_id,
                "screenshot",
                {
                    "job_id": self.job_id,
                    "step_id": row["step_id"],
                    "url": artifact_url(self.job_id, a["id"]),
                    "at": iso(a["created_at"]),
                },
            )
            for a in shots
        ]
        events += [
            Pending(self.job_id, "log", {"job_id": self.job_id, "level": level, "message": message})
            for level, message in ctx.logs
        ]
        artifacts = list(ctx.artifacts)
        job_id = self.job_id
        statements = [self._update_step(row), *[(INSERT_ARTIFACT, artifact) for artifact in artifacts]]
        if checkpoint is not None:
            statements.append((UPDATE_CHECKPOINT, {"b_job": job_id, "checkpoint": self._seal(checkpoint)}))
        written = self._write(statements=statements, events=events)
        if ctx.touched_browser:
            self._unsynced = written

    async def _durable(self, ctx: StepContext) -> bool:
        """Before a browser step begins, the end of the last one is committed: should this worker die
        now, the next attempt knows that step is done and does not do it to the target again (a click
        that submitted, a download). Steps without a browser still ride in batches. False when this
        run may not go on: a newer attempt took the job over meanwhile."""
        ctx.touched_browser = True
        unsynced, self._unsynced = self._unsynced, None
        if unsynced is not None:
            with contextlib.suppress(Exception):  # a failed write is the committer's to report
                await unsynced
        return not self._fence.broken

    async def _restore_or_defer(
        self, runbook: Runbook, scope: dict[str, Any], secrets: frozenset[str], resume_from: int
    ) -> int:
        """Restore the checkpoint's page now, or, when it was reached after the first step this run
        does (an approval a re-run asks again), return its position: it is opened once the run gets
        there, so nothing past the approval is opened before it is decided. -1: nothing deferred."""
        at = int((self._checkpoint or {}).get("position", -1))
        if resume_from <= 0 or not (self._checkpoint or {}).get("url"):
            return -1
        if at >= resume_from:
            return at
        await self._restore(runbook, scope, secrets, resume_from)
        return -1

    async def _restore(
        self, runbook: Runbook, scope: dict[str, Any], secrets: frozenset[str], resume_from: int
    ) -> None:
        """A resumed run: open the checkpoint's page with its cookies and storage, then re-apply the
        page-local steps (fill, select, check, uncheck) done there since it was reached."""
        checkpoint = self._checkpoint or {}
        if not checkpoint.get("url"):
            return
        await self._close_browser()  # a page opened before (for an approval asked again) gives way
        self._context = await self.deps.browsers.new_context(storage_state=checkpoint.get("storage"))
        self._page = await self._context.new_page()
        await self._watch_page(self._page)
        messages = [f"Attempt {self.attempt} resumes at step {runbook.steps[resume_from - 1].id}'s page."]
        try:
            await self._page.goto(checkpoint["url"], timeout=runbook.settings.step_timeout * 1000)
            for step in runbook.steps[int(checkpoint.get("position", -1)) + 1 : resume_from]:
                await self._apply_again(step, scope, secrets, runbook)
        except (PlaywrightError, StepError) as exc:
            messages.append(jsonable(f"Restoring the page failed: {first_line(exc)}", secrets))
        events = [Pending(self.job_id, "log", {"job_id": self.job_id, "level": "info", "message": m}) for m in messages]
        self._write(events=events)

    async def _apply_again(
        self, step: StepBase, scope: dict[str, Any], secrets: frozenset[str], runbook: Runbook
    ) -> None:
        """A page-local step (fill, select, check, uncheck) an earlier run did, applied to this run's
        page again without a record of its own. Any other step that was done stays done."""
        if step.page_local and self._page is not None:
            ctx = self._context_for(step, scope, secrets)
            ctx.deadline = time.monotonic() + runbook.settings.step_timeout
            await self.deps.registry.get(step.action)[1](ctx, self._typed(step, scope))

    async def _replay(self, step: StepBase, scope: dict[str, Any], secrets: frozenset[str], runbook: Runbook) -> None:
        """A step a re-run carried over that comes after a step this run had to do first (an approval
        asked again): its page-local effect is applied again, so the page is as the re-run expects."""
        try:
            await self._apply_again(step, scope, secrets, runbook)
        except (PlaywrightError, StepError) as exc:
            message = jsonable(f"Applying step {step.id} again failed: {first_line(exc)}", secrets)
            self._write(
                events=[Pending(self.job_id, "log", {"job_id": self.job_id, "level": "warning", "message": message})]
            )

    async def _new_checkpoint(self, position: int) -> dict[str, Any] | None:
        """Where the page is, when it moved: the URL, cookies and storage, and the step it moved at.
        Captured values live on the step rows. None when nothing changed."""
        url = self._page_url()
        if url is None or self._context is None or url == (self._checkpoint or {}).get("url"):
            return None
        try:
            storage = await self._context.storage_state()
        except PlaywrightError:
            storage = None
        self._checkpoint = {**(self._checkpoint or {}), "url": url, "storage": storage, "position": position}
        return self._checkpoint

    async def _check_where_the_page_went(self) -> None:
        """The job's browser sends every request through its filtering proxy (worker/proxy.py), which refuses
        what the URL policy refuses, redirects, frames, popups and downloads included; a step during which it
        refused one (and a goto it refused) fails here, naming the first, once. The page's own URL is checked
        too: inside a tunnel to the app's own https origin the proxy cannot see paths, and Playwright's routes
        do not see redirects (microsoft/playwright#3993); a page on a refused URL is taken off it before the
        step's screenshot."""
        if self._context is None:
            return
        url = self._page_url()
        shown = {r.url for r in self.deps.browsers.refusals(self._context)}  # these show the proxy's refusal
        if url and url.startswith(("http:", "https:")) and url not in shown and (why := self.deps.policy.refusal(url)):
            assert self._page is not None
            await self._page.goto("about:blank")
            raise StepError(f"The page went to {url}, which is refused: {why}.")
        if refused := self.deps.browsers.take_refusals(self._context, since=self._row.get("started_at")):
            raise StepError(f"The page tried to open {refused[0].url}, which is refused: {refused[0].reason}.")

    def _seal(self, checkpoint: dict[str, Any]) -> dict[str, Any]:
        """The page's URL and cookies can hold secrets (a token in a query, a session cookie): they are
        stored encrypted, like secret inputs. The position and loss count stay readable."""
        private: dict[str, Any] = {k: checkpoint[k] for k in ("url", "storage") if k in checkpoint}
        public = {k: v for k, v in checkpoint.items() if k not in private}
        return {**public, "sealed": self.deps.svc.box.seal(private)}

    def _unseal(self, stored: dict[str, Any] | None) -> dict[str, Any] | None:
        if not stored:
            return stored
        opened = {k: v for k, v in stored.items() if k != "sealed"}
        return {**opened, **self.deps.svc.box.open(stored.get("sealed"))}

    def _page_url(self) -> str | None:
        return self._page.url if self._page is not None and not self._page.is_closed() else None

    def _count(self, outcome: StepOutcome, retries: int, step_id: str, fatal: bool) -> None:
        """Tally the step; a failure the runbook does not allow (`fatal`) becomes the job's error, even
        after failures it allowed."""
        self.tally.retries += retries
        if outcome.status is StepStatus.SUCCESS:
            self.tally.succeeded += 1
        elif outcome.status is StepStatus.SKIPPED:
            self.tally.skipped += 1
        elif outcome.status is StepStatus.FAILED:
            self.tally.failed += 1
            self.tally.warnings = True
            if fatal and self.tally.first_error is None:
                self.tally.first_error = (step_id, outcome.error or "The step failed.")

    # -- the end ---------------------------------------------------------------------------------

    async def _finish(self, runbook: Runbook, scope: dict[str, Any], elapsed: float, secrets: frozenset[str]) -> None:
        outputs, output_error = render_outputs(runbook, scope, secrets)
        fatal = self.tally.first_error  # a failed step without continue_on_error, a rejection, or a timeout
        if output_error and not fatal:
            fatal = ("", output_error)
        status = JobStatus.FAILED if fatal else JobStatus.COMPLETED
        metrics: dict[str, Any] = {
            "steps_succeeded": self.tally.succeeded,
            "steps_failed": self.tally.failed,
            "steps_skipped": self.tally.skipped,
            "retries": self.tally.retries,
            "duration_s": round(elapsed, 3),
        }
        if self.video_started_at:
            metrics["video_started_at"] = self.video_started_at
        summary = summary_of(runbook, status, fatal, metrics)
        if self.tally.counts["total"] and status is JobStatus.COMPLETED:
            summary = summary_of_records(self.tally.counts, self.tally.failed_records)
        values = {
            "record_counts": self.tally.counts,
            "finished_at": utcnow(),
            "duration_s": round(elapsed, 3),
            "metrics": metrics,
            "outputs": outputs,
            "summary": summary,
            "warnings": self.tally.warnings and status is JobStatus.COMPLETED,
            "error_message": fatal[1] if fatal else None,
            "error_step_id": (fatal[0] or None) if fatal else None,
        }
        report = {
            "job_id": self.job_id,
            "status": status.value,
            "metrics": metrics,
            "record_counts": self.tally.counts,
            "duration_s": round(elapsed, 3),
            "summary": summary,
        }
        job_id, attempt = self.job_id, self.attempt

        finished = self._write(Finish(job_id, attempt, status, values, report))
        if runbook.triggers and not self.cancelled:
            await self._fire_triggers(runbook, scope, status, outputs, finished)

    async def _fire_triggers(
        self, runbook: Runbook, scope: dict[str, Any], status: JobStatus, outputs: Any, finished: Any
    ) -> None:
        """Start the jobs this runbook's triggers ask for, once its end is committed. Each has an
        idempotency key of this job and the trigger's place, so a trigger never starts two."""
        try:
            await finished
        except Exception:  # noqa: BLE001 - the end was not recorded (reported by the committer): no triggers
            return
        job = {**scope["job"], "status": status.value}
        context = {**scope, "outputs": outputs, "job": job}
        events = []
        for index, trigger in enumerate(runbook.triggers):
            if trigger.on != "finished" and trigger.on != status.value:
                continue
            try:
                inputs = templating.render(trigger.inputs, context)
                request = JobRequest(
                    inputs=inputs,
                    source="trigger",
                    actor=f"job:{self.job_id}",
                    owner=self._owner,
                    idempotency_key=f"trigger:{self.job_id}:{index}",
                    internal=True,
                    data={"triggered_by": self.job_id},
                )
                child, _ = await jobs.create(self.deps.svc, trigger.runbook, request)
                message = f"Trigger {index + 1} started job {child['id']} of {trigger.runbook}."
                events.append(Pending(self.job_id, "log", {"job_id": self.job_id, "level": "info", "message": message}))
            except OrchestratorError as exc:
                fields = getattr(exc, "fields", None)
                detail = "; ".join(f"{k}: {v}" for k, v in fields.items()) if fields else exc.message
                message = f"Trigger {index + 1} could not start {trigger.runbook}: {detail}"
                events.append(
                    Pending(self.job_id, "log", {"job_id": self.job_id, "level": "error", "message": message})
                )
        if events:
            self._write(events=events)

    async def _close_browser(self) -> None:
        if self._context is not None:
            try:
                await self._context.close()
            except PlaywrightError as exc:
                log.warning("closing the browser context of job %s: %s", self.job_id, exc)
            self._context = self._page = None
