"""A run's moves of its job's status (orchestrator/transitions.py) as write ops the committer carries
(worker/committer.py): plain objects, so the SQLite writer process can receive them; each fenced
by the run's attempt. What happens when a move loses a race is the move's, not the op's.

An op whose move begins with one compare-and-set says so (`plan`): the committer makes those of a
whole batch together (transitions.make_all), then calls `won` for the ones that moved; an op whose
job was elsewhere runs whole, as alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from orchestrator.approvals import timed_out
from orchestrator.db import tables as t
from orchestrator.db.tables import utcnow
from orchestrator.events import Pending
from orchestrator.states import JobStatus
from orchestrator.transitions import ASK, CLAIM, FINISH, HAND_OFF, HANDOFF_DONE, TIME_OUT, Planned, make_sync


@dataclass(frozen=True)
class JobOp:
    job_id: str
    attempt: int

    def plan(self) -> Planned | None:
        """The move this op makes, for the committer to make with other runs' (None: run it whole)."""
        return None

    def won(self, events: list[Pending]) -> Any:
        """The planned move was made: what the op does after it; answers what the op answers."""
        return None


@dataclass(frozen=True)
class Claim(JobOp):
    robot: str
    started_at: Any

    def plan(self) -> Planned:
        values = {"started_at": self.started_at or utcnow(), "robot": self.robot}
        return Planned(CLAIM, self.job_id, JobStatus.RUNNING, self.attempt, values)

    def __call__(self, conn: Connection, events: list[Pending]) -> None:
        make_sync(conn, CLAIM, self.job_id, attempt=self.attempt, values=self.plan().values, events=events)


@dataclass(frozen=True)
class Finish(JobOp):
    """The run's end, and its `report` event (with the status and summary that stand). Answers the status
    that stands (what the run's metrics count: worker/counts.py), or None when a newer attempt ends the job."""

    status: JobStatus
    values: dict[str, Any]
    report: dict[str, Any]

    def plan(self) -> Planned:
        return Planned(FINISH, self.job_id, self.status, self.attempt, self.values)

    def won(self, events: list[Pending]) -> str:
        events.append(Pending(self.job_id, "report", self.report))
        return self.status.value

    def __call__(self, conn: Connection, events: list[Pending]) -> str | None:
        moved = make_sync(
            conn, FINISH, self.job_id, self.status, attempt=self.attempt, values=self.values, events=events
        )
        if moved is None:
            return None  # a newer attempt reports its own end
        report = self.report
        if not moved.won:
            decided = conn.execute(select(t.jobs.c.summary).where(t.jobs.c.id == self.job_id)).scalar()
            report = {**report, "status": moved.status.value, "summary": decided or report["summary"]}
        events.append(Pending(self.job_id, "report", report))
        return moved.status.value


@dataclass(frozen=True)
class RequestApproval(JobOp):
    """The run stops at an approval step, and the request's `approval` event."""

    approval: dict[str, Any]

    def plan(self) -> Planned:
        return Planned(ASK, self.job_id, JobStatus.WAITING_FOR_APPROVAL, self.attempt, {"approval": self.approval})

    def won(self, events: list[Pending]) -> None:
        events.append(Pending(self.job_id, "approval", {"job_id": self.job_id, **self.approval}))

    def __call__(self, conn: Connection, events: list[Pending]) -> None:
        make_sync(conn, ASK, self.job_id, attempt=self.attempt, values=self.plan().values, events=events)
        self.won(events)


@dataclass(frozen=True)
class HandOff(JobOp):
    """The run stops at a handoff step: the job is paused with the handoff (its message is the reason)."""

    handoff: dict[str, Any]

    def __call__(self, conn: Connection, events: list[Pending]) -> None:
        make_sync(conn, HAND_OFF, self.job_id, attempt=self.attempt, values={"handoff": self.handoff}, events=events)


@dataclass(frozen=True)
class HandoffDone(JobOp):
    """The handoff ended by itself (`until` held, or its time ran out): the job runs again, unless a person
    resumed or cancelled it first. `outcome` is recorded in the handoff (done, timed out)."""

    outcome: str

    def __call__(self, conn: Connection, events: list[Pending]) -> None:
        jobs = t.jobs.c
        handoff = conn.execute(select(jobs.handoff).where(jobs.id == self.job_id)).scalar() or {}
        ended = {**handoff, "outcome": self.outcome, "done_at": utcnow().isoformat()}
        # recorded whoever moves the job on (a person's Resume too), fenced by the run's attempt
        conn.execute(update(t.jobs).where(jobs.id == self.job_id, jobs.attempt == self.attempt).values(handoff=ended))
        if self.outcome != "resumed":
            make_sync(conn, HANDOFF_DONE, self.job_id, attempt=self.attempt, events=events)


@dataclass(frozen=True)
class TimeOutApproval(JobOp):
    """Nobody decided in time: the `decision` the step's on_timeout makes (orchestrator/approvals.py)."""

    decision: dict[str, Any]

    def __call__(self, conn: Connection, events: list[Pending]) -> None:
        asked = conn.execute(select(t.jobs.c.approval).where(t.jobs.c.id == self.job_id)).scalar() or {}
        target, values = timed_out(asked, self.decision)
        make_sync(conn, TIME_OUT, self.job_id, target, attempt=self.attempt, values=values, events=events)
