"""The rows a job run writes and reads: prepared statements, the claim, and what a run ends with."""

from __future__ import annotations

import contextlib
import functools
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection, Dialect

from orchestrator import templating
from orchestrator.db import tables as t
from orchestrator.db.driver import DriverRead
from orchestrator.db.tables import utcnow
from orchestrator.errors import InvalidTransition, OrchestratorError
from orchestrator.events import Pending
from orchestrator.masking import mask_value
from orchestrator.runbooks.schema import Runbook
from orchestrator.states import JobStatus, StepStatus
from orchestrator.transitions import SELECT_STATUS, cancel_leftovers, move_sync
from worker.committer import prepared

STEP_FIELDS = (
    "status",
    "started_at",
    "finished_at",
    "duration_s",
    "retries",
    "attempt",
    "captured",
    "error",
    "diagnostics",
)

# Statements built once: the committer runs each of them as one executemany per batch.
UPDATE_STEP = prepared(
    f"{__name__}.UPDATE_STEP",
    update(t.steps)
    .where(
        t.steps.c.job_id == bindparam("b_job"),
        t.steps.c.step_id == bindparam("b_step"),
        # fenced: a stale attempt (its job resumed elsewhere) changes nothing
        t.steps.c.job_id.in_(
            select(t.jobs.c.id).where(t.jobs.c.id == bindparam("b_job"), t.jobs.c.attempt == bindparam("attempt"))
        ),
    )
    .values({name: bindparam(name) for name in STEP_FIELDS}),
)
INSERT_ARTIFACT = prepared(f"{__name__}.INSERT_ARTIFACT", insert(t.artifacts))
UPDATE_CHECKPOINT = prepared(
    f"{__name__}.UPDATE_CHECKPOINT",
    update(t.jobs).where(t.jobs.c.id == bindparam("b_job")).values(checkpoint=bindparam("checkpoint")),
)


SELECT_JOB = select(t.jobs).where(t.jobs.c.id == bindparam("b_id"))


@functools.lru_cache(maxsize=8)
def _job_reader(dialect: Dialect) -> DriverRead:
    return DriverRead(SELECT_JOB, dialect)


def select_job(conn: Connection, job_id: str) -> Any:
    """The job's row: through the driver on the worker's own SQLite connection (DriverRead),
    through SQLAlchemy elsewhere."""
    if conn.dialect.driver != "pysqlite":
        return conn.execute(SELECT_JOB, {"b_id": job_id}).mappings().first()
    return _job_reader(conn.dialect).first(conn, b_id=job_id)


SELECT_STEPS = (
    select(t.steps.c.position, t.steps.c.step_id, t.steps.c.status, t.steps.c.captured)
    .where(t.steps.c.job_id == bindparam("b_id"))
    .order_by(t.steps.c.position)
)


@dataclass(frozen=True)
class Resume:
    """Where a run starts: the first step to run, the steps already done (ended by an earlier attempt,
    or carried over by a re-run: they are not run again), and the values those steps captured."""

    position: int = 0
    done: frozenset[int] = frozenset()
    captured: dict[str, Any] = field(default_factory=dict)


FROM_THE_START = Resume()
#: read_job's answer when `whole` was False and the job has steps to resume from.
READ_AGAIN = Resume(position=-1)


def read_job(conn: Connection, job_id: str, whole: bool = True) -> tuple[Any, Resume]:
    """The job row and where to start. Unless `whole`, only the row: a job that resumes gets
    READ_AGAIN (read it whole, in one snapshot)."""
    row = select_job(conn, job_id)
    if row is None:
        return None, FROM_THE_START
    fresh = row["status"] == JobStatus.QUEUED.value and row["attempt"] == 1 and not row["approval"]
    if fresh and not (row["data"] or {}).get("from_step"):
        return row, FROM_THE_START  # a first attempt that has not started: nothing to resume
    if not whole:
        return row, READ_AGAIN
    steps = conn.execute(SELECT_STEPS, {"b_id": job_id}).all()
    finished = (StepStatus.SUCCESS.value, StepStatus.SKIPPED.value)
    approval = row["approval"] or {}
    # an approval step counts as done only when a decision approved it; a re-run never carries one over
    approved = approval.get("step_id") if approval.get("decision") == "approved" else None
    done = frozenset(s.position for s in steps if s.status in finished or s.step_id == approved)
    position = next((s.position for s in steps if s.position not in done), len(steps))
    captured: dict[str, Any] = {}
    for step in steps:
        if step.position in done:
            captured.update(step.captured or {})
    return row, Resume(position, done, captured)


@dataclass(frozen=True)
class JobOp:
    """A write op of one run (worker/committer.py): a plain object, so the SQLite writer process
    can receive it. Its moves are fenced by the run's attempt."""

    job_id: str
    attempt: int

    def _move(
        self, conn: Connection, events: list[Pending], to: JobStatus, came_from: JobStatus, values: dict[str, Any]
    ) -> None:
        move_sync(conn, self.job_id, to, expected={came_from}, attempt=self.attempt, values=values, events=events)


@dataclass(frozen=True)
class Claim(JobOp):
    """The run's claim: queued (or scheduled, whose time has come) to running, for this attempt."""

    robot: str
    started_at: Any

    def __call__(self, conn: Connection, events: list[Pending]) -> None:
        values = {"started_at": self.started_at or utcnow(), "robot": self.robot}
        try:
            self._move(conn, events, JobStatus.RUNNING, JobStatus.QUEUED, values)
        except InvalidTransition:  # a job for later whose time has come goes through queued
            if JobStatus(conn.execute(SELECT_STATUS, {"b_id": self.job_id}).scalar_one()) is not JobStatus.SCHEDULED:
                raise
            move_sync(conn, self.job_id, JobStatus.QUEUED, events=events)
            self._move(conn, events, JobStatus.RUNNING, JobStatus.QUEUED, values)


@dataclass(frozen=True)
class Finish(JobOp):
    """End the run: completed or failed, unless a person ended the job first."""

    status: JobStatus
    values: dict[str, Any]
    report: dict[str, Any]

    def __call__(self, conn: Connection, events: list[Pending]) -> None:
        job_id, values, report = self.job_id, self.values, dict(self.report)
        try:
            self._move(conn, events, self.status, JobStatus.RUNNING, values)
        except InvalidTransition:
            # A person ended the job first (cancel, reject): their status and error stand;
            # the run's metrics and outputs are still recorded. A newer attempt writes its own.
            row = conn.execute(select(t.jobs.c.status, t.jobs.c.attempt).where(t.jobs.c.id == job_id)).first()
            if row is None or row.attempt != self.attempt:
                return
            cancel_leftovers(conn, job_id)
            keep = ("metrics", "outputs", "duration_s", "finished_at")
            conn.execute(update(t.jobs).where(t.jobs.c.id == job_id).values({k: values[k] for k in keep}))
            report["status"] = row.status
            decided = conn.execute(select(t.jobs.c.summary).where(t.jobs.c.id == job_id)).scalar()
            report["summary"] = decided or report["summary"]
        events.append(Pending(job_id, "report", report))


@dataclass(frozen=True)
class RequestApproval(JobOp):
    """The run stops at an approval step: running to waiting_for_approval, and the request's event."""

    approval: dict[str, Any]

    def __call__(self, conn: Connection, events: list[Pending]) -> None:
        self._move(conn, events, JobStatus.WAITING_FOR_APPROVAL, JobStatus.RUNNING, {"approval": self.approval})
        events.append(Pending(self.job_id, "approval", {"job_id": self.job_id, **self.approval}))


@dataclass(frozen=True)
class TimeOutApproval(JobOp):
    """Nobody decided in time: the step's `on_timeout` decides (`target` running or failed)."""

    target: JobStatus
    decision: dict[str, Any]

    def __call__(self, conn: Connection, events: list[Pending]) -> None:
        current = conn.execute(select(t.jobs.c.approval).where(t.jobs.c.id == self.job_id)).scalar() or {}
        values: dict[str, Any] = {"approval": {**current, **self.decision}}
        if self.target is JobStatus.FAILED:
            message = self.decision["comment"]
            values.update(error_message=message, error_step_id=current.get("step_id"), summary=message)
        with contextlib.suppress(InvalidTransition):  # a person decided in the same instant: theirs stands
            self._move(conn, events, self.target, JobStatus.WAITING_FOR_APPROVAL, values)


def render_outputs(
    runbook: Runbook, scope: dict[str, Any], secrets: frozenset[str]
) -> tuple[dict[str, Any], str | None]:
    try:
        return jsonable(templating.render(runbook.outputs, scope), secrets), None
    except OrchestratorError as exc:
        return {}, f"The outputs could not be computed: {exc.message}"


def summary_of(runbook: Runbook, status: JobStatus, fatal: tuple[str, str] | None, metrics: dict[str, Any]) -> str:
    if fatal:
        where = f"at step {fatal[0]}" if fatal[0] else ""
        return f"{runbook.display_title} failed {where}: {fatal[1]}".replace(" :", ":")
    done = metrics["steps_succeeded"]
    extra = f", {metrics['steps_failed']} failed but allowed to" if metrics["steps_failed"] else ""
    return f"{runbook.display_title} completed {done} steps in {metrics['duration_s']:.1f} s{extra}."


def truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "no", "0", "off", "none")
    return bool(value)


def jsonable(value: Any, secrets: frozenset[str]) -> Any:
    """`value` as JSON data, with every secret inside its strings replaced by ********. Strings only:
    replacing in the JSON text would corrupt it when a secret is short (a PIN "1" inside `{"a": 1}`)."""
    return mask_value(json.loads(json.dumps(value, default=str)), secrets)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
