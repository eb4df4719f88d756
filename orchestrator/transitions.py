"""The one function that changes a job's status: table lookup, then compare-and-set."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.db import tables as t
from orchestrator.db.tables import utcnow
from orchestrator.errors import InvalidTransition, JobNotFound
from orchestrator.events import Pending
from orchestrator.states import JobStatus, allowed_actions, can_move


def move_sync(
    conn: Connection,
    job_id: str,
    to: JobStatus,
    *,
    expected: set[JobStatus] | None = None,
    attempt: int | None = None,
    values: dict[str, Any] | None = None,
    events: list[Pending] | None = None,
) -> JobStatus:
    """Move a job to `to` inside the caller's write transaction; return the previous status.

    Raises InvalidTransition when the table forbids the move, when the job is not in one of
    `expected`, or when another writer changed it first (or a newer attempt fences this one).
    """
    row = conn.execute(select(t.jobs.c.status, t.jobs.c.attempt).where(t.jobs.c.id == job_id)).first()
    if row is None:
        raise JobNotFound(f"No job has the id {job_id}.")
    current = JobStatus(row.status)
    if (expected is not None and current not in expected) or not can_move(current, to):
        raise _refused(job_id, current, to)
    where = [t.jobs.c.id == job_id, t.jobs.c.status == current.value]
    if attempt is not None:
        where.append(t.jobs.c.attempt == attempt)
    now = utcnow()
    result = conn.execute(update(t.jobs).where(*where).values(status=to.value, updated_at=now, **(values or {})))
    if result.rowcount != 1:
        raise _refused(job_id, current, to, "it changed meanwhile")
    if events is not None:
        events.append(
            Pending(
                job_id,
                "status",
                {"job_id": job_id, "status": to.value, "previous": current.value, "at": now.isoformat()},
            )
        )
    return current


async def move(conn: AsyncConnection, job_id: str, to: JobStatus, **kwargs: Any) -> JobStatus:
    """move_sync on an async connection (one implementation for the web's and the worker's writes)."""
    return await conn.run_sync(lambda sync: move_sync(sync, job_id, to, **kwargs))


def _refused(job_id: str, current: JobStatus, to: JobStatus, why: str = "") -> InvalidTransition:
    allowed = [a.value for a in allowed_actions(current)]
    reason = f" ({why})" if why else ""
    return InvalidTransition(
        f"Job {job_id} is {current.value} and cannot become {to.value}{reason}.",
        status=current.value,
        allowed_actions=allowed,
    )
