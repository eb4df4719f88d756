"""The one function that changes a job's status: table lookup, then compare-and-set."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Update, bindparam, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.db import driver
from orchestrator.db import tables as t
from orchestrator.db.tables import utcnow
from orchestrator.errors import InvalidTransition, JobNotFound
from orchestrator.events import Pending
from orchestrator.states import JobStatus, StepStatus, allowed_actions, can_move


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
    now = utcnow()
    params = {"b_id": job_id, "status": to.value, "updated_at": now, **(values or {})}
    if attempt is not None:
        params["b_attempt"] = attempt
    keys = tuple(sorted(values or ()))
    # The common case first: one compare-and-set from the only status the caller expects.
    if expected is not None and len(expected) == 1:
        (current,) = expected
        if can_move(current, to) and _run(conn, keys, attempt is not None, params, current):
            _announce(events, job_id, current, to, now)
            return current
    row = conn.execute(SELECT_STATUS, {"b_id": job_id}).first()
    if row is None:
        raise JobNotFound(f"No job has the id {job_id}.")
    current = JobStatus(row.status)
    if (expected is not None and current not in expected) or not can_move(current, to):
        raise _refused(job_id, current, to)
    if not _run(conn, keys, attempt is not None, params, current):
        raise _refused(job_id, current, to, "it changed meanwhile")
    _announce(events, job_id, current, to, now)
    return current


SELECT_STATUS = select(t.jobs.c.status, t.jobs.c.attempt).where(t.jobs.c.id == bindparam("b_id"))


@functools.cache
def _update(keys: tuple[str, ...], fenced: bool) -> Update:
    """The compare-and-set for one set of columns, built once (building statements costs more than
    running them)."""
    where = [t.jobs.c.id == bindparam("b_id"), t.jobs.c.status == bindparam("b_from")]
    if fenced:
        where.append(t.jobs.c.attempt == bindparam("b_attempt"))
    return update(t.jobs).where(*where).values({k: bindparam(k) for k in ("status", "updated_at", *keys)})


def _run(conn: Connection, keys: tuple[str, ...], fenced: bool, params: dict[str, Any], current: JobStatus) -> bool:
    return driver.execute(conn, _update(keys, fenced), {**params, "b_from": current.value}) == 1


def _announce(events: list[Pending] | None, job_id: str, current: JobStatus, to: JobStatus, now: Any) -> None:
    if events is not None:
        events.append(
            Pending(
                job_id,
                "status",
                {"job_id": job_id, "status": to.value, "previous": current.value, "at": now.isoformat()},
            )
        )


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


def cancel_leftovers(conn: Connection, job_id: str) -> None:
    """A job that ended before its run did: the steps that were still to run, or running, are cancelled."""
    conn.execute(
        update(t.steps)
        .where(t.steps.c.job_id == job_id, t.steps.c.status.in_((StepStatus.PENDING.value, StepStatus.RUNNING.value)))
        .values(status=StepStatus.CANCELLED.value)
    )
