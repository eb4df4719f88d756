"""Approval deadlines kept by the scheduler (and every worker's reaper), from the stored request time.

The worker that asked also keeps the deadline while it waits; this sweep is what keeps it when that
worker crashed or stopped during the wait. Both decide with a compare-and-set from
waiting_for_approval, so only one decision is ever recorded.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.db import tables as t
from orchestrator.db.engine import reading, writing
from orchestrator.db.tables import utcnow
from orchestrator.events import Pending, append, publish
from orchestrator.keys import lease_key
from orchestrator.schemas.common import parse_time
from orchestrator.states import JobStatus, StepStatus
from orchestrator.transitions import TIME_OUT, cancel_leftovers, make
from orchestrator.views import iso

log = logging.getLogger(__name__)

#: The asking worker decides first when it is alive; the sweep waits this much longer.
GRACE = timedelta(seconds=2)


def timeout_decision(seconds: float, on_timeout: str) -> dict[str, Any]:
    """The decision recorded when nobody decided in time (`on_timeout`: approve or reject)."""
    verb = "approved" if on_timeout == "approve" else "rejected"
    message = f"No decision within {seconds:g} s: {verb} automatically."
    return {"decision": verb, "by": "timeout", "comment": message, "decided_at": iso(utcnow())}


def timed_out(
    approval: dict[str, Any], decision: dict[str, Any], ends: bool = False
) -> tuple[JobStatus, dict[str, Any]]:
    """Where a job whose approval timed out goes (running, or failed with the decision as its error),
    and its columns; `ends`: the job ends here (its run is gone), so it also gets its finish time."""
    target = JobStatus.RUNNING if decision["decision"] == "approved" else JobStatus.FAILED
    values: dict[str, Any] = {"approval": {**approval, **decision}}
    if target is JobStatus.FAILED:
        message = decision["comment"]
        values.update(error_message=message, error_step_id=approval.get("step_id"), summary=message)
        if ends:
            values["finished_at"] = utcnow()
    return target, values


def overdue(approval: Any, now: datetime) -> bool:
    """Whether a pending approval request's timeout has run out (plus the asking worker's grace). A
    record that cannot be read (no mapping, a time or a timeout that is none) never is: it is left to a
    person (who can cancel the job), and the other jobs' deadlines are kept."""
    if not isinstance(approval, dict) or approval.get("decision") or approval.get("timeout_s") is None:
        return False
    try:
        asked = parse_time(approval["requested_at"])
        return asked + timedelta(seconds=float(approval["timeout_s"])) + GRACE <= now
    except (KeyError, TypeError, ValueError, OverflowError):
        return False


async def time_out_due(engine: AsyncEngine, redis: Redis) -> int:
    """Decide every approval whose timeout has run out by its `on_timeout`, unless the worker that asked
    still holds the job's lease (it keeps the deadline itself, and reports the end); return how many."""
    now, decided, after = utcnow(), [], ""
    while True:
        async with reading(engine) as conn:
            rows = (await conn.execute(_WAITING.where(t.jobs.c.id > after).limit(PAGE))).all()
        for row in rows:
            asker_gone = overdue(row.approval, now) and not await redis.exists(lease_key(row.id))
            if asker_gone and await _decide(engine, row.id, row.approval):
                decided.append(row.id)
        if len(rows) < PAGE:
            break
        after = rows[-1].id
    if decided:
        await publish(redis, decided)
    return len(decided)


PAGE = 500
_WAITING = (
    select(t.jobs.c.id, t.jobs.c.approval)
    .where(t.jobs.c.status == JobStatus.WAITING_FOR_APPROVAL.value)
    .order_by(t.jobs.c.id)
)


async def _decide(engine: AsyncEngine, job_id: str, approval: dict[str, Any]) -> bool:
    decision = timeout_decision(float(approval["timeout_s"]), str(approval.get("on_timeout") or "reject"))
    events: list[Pending] = []
    async with writing(engine) as conn:
        # locked (PostgreSQL; SQLite's writer holds the whole database) until the move commits
        now = (
            await conn.execute(select(t.jobs.c.approval).where(t.jobs.c.id == job_id).with_for_update())
        ).scalar() or {}
        if now.get("requested_at") != approval.get("requested_at") or now.get("decision"):
            return False  # decided meanwhile, and perhaps asking again: that request has its own deadline
        target, values = timed_out(now, decision, ends=True)  # with the votes given meanwhile
        if await make(conn, TIME_OUT, job_id, target, values=values, events=events) is None:
            return False  # decided (or cancelled) meanwhile
        if target is JobStatus.FAILED:  # the asking worker may be gone: end the step and the job here
            await _fail_steps(conn, job_id, decision["comment"])
            report = {"job_id": job_id, "status": target.value, "summary": decision["comment"]}
            events.append(Pending(job_id, "report", report))
        await append(conn, events)
    log.info("job %s: approval of step %s timed out (%s)", job_id, approval.get("step_id"), decision["decision"])
    return True


async def _fail_steps(conn: Any, job_id: str, message: str) -> None:
    """The waiting step (or the loop or child step around it) fails; the steps after it never ran."""
    steps = t.steps.c
    waiting = (StepStatus.WAITING.value, StepStatus.RUNNING.value)
    await conn.execute(
        update(t.steps)
        .where(steps.job_id == job_id, steps.status.in_(waiting))
        .values(status=StepStatus.FAILED.value, error=message, finished_at=utcnow())
    )
    await conn.run_sync(cancel_leftovers, job_id)
