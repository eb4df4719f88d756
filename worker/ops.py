"""A run's moves of its job's status (orchestrator/transitions.py) as write ops the committer carries
(worker/committer.py): plain objects, so the SQLite writer process can receive them; each fenced
by the run's attempt. What happens when a move loses a race is the move's, not the op's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from orchestrator.approvals import timed_out
from orchestrator.db import tables as t
from orchestrator.db.tables import utcnow
from orchestrator.events import Pending
from orchestrator.states import JobStatus
from orchestrator.transitions import ASK, CLAIM, FINISH, TIME_OUT, make_sync


@dataclass(frozen=True)
class JobOp:
    job_id: str
    attempt: int


@dataclass(frozen=True)
class Claim(JobOp):
    robot: str
    started_at: Any

    def __call__(self, conn: Connection, events: list[Pending]) -> None:
        values = {"started_at": self.started_at or utcnow(), "robot": self.robot}
        make_sync(conn, CLAIM, self.job_id, attempt=self.attempt, values=values, events=events)


@dataclass(frozen=True)
class Finish(JobOp):
    """The run's end, and its `report` event (with the status and summary that stand)."""

    status: JobStatus
    values: dict[str, Any]
    report: dict[str, Any]

    def __call__(self, conn: Connection, events: list[Pending]) -> None:
        moved = make_sync(
            conn, FINISH, self.job_id, self.status, attempt=self.attempt, values=self.values, events=events
        )
        if moved is None:
            return  # a newer attempt reports its own end
        report = self.report
        if not moved.won:
            decided = conn.execute(select(t.jobs.c.summary).where(t.jobs.c.id == self.job_id)).scalar()
            report = {**report, "status": moved.status.value, "summary": decided or report["summary"]}
        events.append(Pending(self.job_id, "report", report))


@dataclass(frozen=True)
class RequestApproval(JobOp):
    """The run stops at an approval step, and the request's `approval` event."""

    approval: dict[str, Any]

    def __call__(self, conn: Connection, events: list[Pending]) -> None:
        make_sync(conn, ASK, self.job_id, attempt=self.attempt, values={"approval": self.approval}, events=events)
        events.append(Pending(self.job_id, "approval", {"job_id": self.job_id, **self.approval}))


@dataclass(frozen=True)
class TimeOutApproval(JobOp):
    """Nobody decided in time: the `decision` the step's on_timeout makes (orchestrator/approvals.py)."""

    decision: dict[str, Any]

    def __call__(self, conn: Connection, events: list[Pending]) -> None:
        asked = conn.execute(select(t.jobs.c.approval).where(t.jobs.c.id == self.job_id)).scalar() or {}
        target, values = timed_out(asked, self.decision)
        make_sync(conn, TIME_OUT, self.job_id, target, attempt=self.attempt, values=values, events=events)
