"""A new job's way in, shared by requests, re-runs and reports: its id, the caller's job budget, its
rows (job, pending steps, attachments, first status event) and its place on the queue."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select, text

from orchestrator import limits, queue, tracing
from orchestrator.db import tables as t
from orchestrator.db.engine import reading, writing
from orchestrator.errors import Duplicate
from orchestrator.events import Pending, append, publish
from orchestrator.ratelimit import rate_limit
from orchestrator.schemas.jobs import JobRequest
from orchestrator.services import Services
from orchestrator.states import JobStatus
from orchestrator.views import job_view

log = logging.getLogger(__name__)


def new_id() -> str:
    return secrets.token_hex(8)


async def count_job(svc: Services, owner: str | None, actor: str | None, source: str) -> None:
    """Every path that creates jobs for someone counts against their budget (ORCH_JOB_RATE a minute,
    per owner, else per caller): requests, webhooks, schedules, triggers, re-runs and reports. Child
    jobs count through their parent; the orchestrator's own code (no actor) is not counted."""
    if actor is None or source == "runbook":
        return
    await rate_limit(svc.redis, f"jobs:{owner or actor}", svc.settings.job_rate, local=svc.counts)


def scoped_key(request: JobRequest) -> str | None:
    """The idempotency key as stored: `SCOPE|KEY`. A caller's key is scoped by the caller, so nobody
    can claim or read another's job by guessing a key; the orchestrator's own keys have the empty
    scope, which no caller has (actors are never empty and never contain `|`)."""
    if not request.idempotency_key:
        return None
    scope = "" if request.internal else (request.actor or "anonymous").replace("|", "/")
    return f"{scope}|{request.idempotency_key}"


async def _refuse_duplicate(conn: Any, row: dict[str, Any]) -> None:
    if conn.dialect.name == "postgresql":  # two creates of the same inputs wait for each other here
        await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:h))"), {"h": row["inputs_hash"]})
    running = (
        await conn.execute(
            select(t.jobs.c.id, t.jobs.c.status).where(
                t.jobs.c.runbook == row["runbook"],
                t.jobs.c.inputs_hash == row["inputs_hash"],
                t.jobs.c.status.in_([s.value for s in JobStatus if not s.finished]),  # running, paused, waiting too
            )
        )
    ).first()
    if running is not None:
        raise Duplicate(
            f"Job {running.id} of {row['runbook']} with the same inputs is {running.status}; "
            "this runbook refuses duplicates (settings.dedupe: inputs).",
            job_id=running.id,
        )


async def insert_job(
    svc: Services,
    row: dict[str, Any],
    steps: Sequence[tuple[str, str | None, str]],
    attachments: list[dict[str, Any]],
    dedupe: bool = False,
    carried: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Store a new job, its pending steps (id, name, action), its attachments and its first status event.
    With `dedupe`, refuse it (in the same transaction) when a job of the runbook with the same inputs
    is queued or running."""
    job_id = row["id"]
    event = Pending(
        job_id,
        "status",
        {"job_id": job_id, "status": row["status"], "previous": None, "at": row["created_at"].isoformat()},
    )
    async with writing(svc.engine) as conn:
        if dedupe:
            await _refuse_duplicate(conn, row)
        await conn.execute(insert(t.jobs).values(**row))
        rows = [
            {
                "job_id": job_id,
                "position": i,
                "step_id": sid,
                "name": name,
                "action": action,
                "status": "pending",
                "captured": None,
                "error": None,
                **(carried or {}).get(sid, {}),
            }
            for i, (sid, name, action) in enumerate(steps)
        ]
        if rows:
            await conn.execute(insert(t.steps), rows)
        if attachments:
            await conn.execute(insert(t.artifacts), attachments)
        await append(conn, [event])


async def enqueue_job(svc: Services, row: dict[str, Any], limit: int | None) -> None:
    """Enqueue a new job on arq (in its runbook's line too when the runbook has a concurrency
    limit) and announce it; the row, already stored, is the truth if Redis fails."""
    job_id, run_at = row["id"], row.get("scheduled_at")
    try:
        if limit and not (run_at and run_at > row["created_at"]):
            await limits.join_line(svc.redis, row["runbook"], limit, job_id, row["created_at"], row["priority"])
        with tracing.enqueueing(svc.tracing, job_id, row["runbook"], row["priority"]) as trace:
            await queue.enqueue(svc.redis, job_id, 1, row["priority"], run_at, trace=trace)
    except Exception as exc:  # noqa: BLE001 - the row is the truth; the reconciler enqueues it later
        log.warning("job %s stored but not enqueued (%s); it will be enqueued when Redis answers", job_id, exc)
    await publish(svc.redis, [job_id])


async def by_key(svc: Services, name: str, key: str) -> dict[str, Any] | None:
    async with reading(svc.engine) as conn:
        job_id = (
            await conn.execute(select(t.jobs.c.id).where(t.jobs.c.runbook == name, t.jobs.c.idempotency_key == key))
        ).scalar()
        return await job_view(conn, job_id, svc.settings.job_records) if job_id else None
