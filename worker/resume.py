"""Where a run starts: the job's row, its runbook, and, for a job that resumes, the steps already
done and the values they captured, read in one snapshot."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection, Dialect

from orchestrator.db import tables as t
from orchestrator.db.driver import DRIVER_READS, DriverRead
from orchestrator.runbooks.catalog import load_version
from orchestrator.runbooks.schema import Runbook
from orchestrator.states import JobStatus, StepStatus
from worker.deps import Deps

SELECT_JOB = select(t.jobs).where(t.jobs.c.id == bindparam("b_id"))


@functools.lru_cache(maxsize=8)
def _job_reader(dialect: Dialect) -> DriverRead:
    return DriverRead(SELECT_JOB, dialect)


def select_job(conn: Connection, job_id: str) -> Any:
    """The job's row: through the driver on the worker's own SQLite connection and on asyncpg
    (DriverRead), through SQLAlchemy elsewhere."""
    if conn.dialect.driver not in DRIVER_READS:
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


async def where_to_start(deps: Deps, job_id: str, attempt: int) -> tuple[dict[str, Any], Runbook, Resume] | None:
    """The job's row, its runbook and where its run starts; None when the job is gone or on another attempt."""
    row, resume = await deps.committer.read(lambda conn: read_job(conn, job_id, whole=False))
    if resume is READ_AGAIN:  # the row and its steps from one snapshot
        row, resume = await deps.committer.read(lambda conn: read_job(conn, job_id), True)
    if row is None or row["attempt"] != attempt:
        return None
    if row["version_id"] not in deps.versions:  # versions never change: read each once
        deps.versions[row["version_id"]] = await load_version(deps.svc.engine, row["version_id"])
    return dict(row), deps.versions[row["version_id"]].runbook, resume
