"""Jobs: create (validate inputs, lock the version, encrypt secrets, enqueue), list, act."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import ColumnElement, Text, and_, cast, func, insert, or_, select, text
from sqlalchemy.exc import IntegrityError

from orchestrator import inputs as job_inputs
from orchestrator import limits, queue
from orchestrator.db import tables as t
from orchestrator.db.engine import reading, writing
from orchestrator.db.tables import utcnow
from orchestrator.errors import (
    Conflict,
    Duplicate,
    Forbidden,
    InvalidInput,
    InvalidTransition,
    JobNotFound,
    OrchestratorError,
)
from orchestrator.events import Pending, append, publish
from orchestrator.ratelimit import rate_limit
from orchestrator.runbooks.catalog import load_version
from orchestrator.runbooks.schema import Runbook
from orchestrator.runbooks.steps import StepBase
from orchestrator.services import Services
from orchestrator.states import ACTIONS, Action, JobStatus, StepStatus, allowed_actions
from orchestrator.transitions import move
from orchestrator.views import iso, job_summary, job_view

log = logging.getLogger(__name__)

CONTROL_CHANNEL = "orch:control"
#: Keys of a job's `data` that only the orchestrator writes: a re-run's origin and what it runs again
#: (the approval panel trusts them), the schedule or job that started it.
RESERVED_DATA = frozenset({"rerun_of", "from_step", "only_records", "triggered_by", "schedule_id", "fire_time"})
PRIORITIES = ("low", "normal", "high")


@dataclass
class JobRequest:
    """What a caller asks for; validated by `create`."""

    inputs: dict[str, Any] = field(default_factory=dict)
    priority: str | None = None
    tags: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    run_at: datetime | None = None
    idempotency_key: str | None = None
    source: str = "api"
    actor: str | None = None
    #: The human who owns the job (orchestrator.auth.Principal.human of whoever started it, or the
    #: owner of the token, hook, schedule or parent job that did); self-approval compares it.
    owner: str | None = None
    #: The idempotency key is the orchestrator's own (child jobs, triggers, schedule fire times): it
    #: lives in a namespace no request can write. A caller's key is scoped by the caller (`actor`).
    internal: bool = False
    parent_id: str | None = None
    preview: bool = False
    video: bool = False

    @classmethod
    def from_json(cls, body: Any, **extra: Any) -> JobRequest:
        """Check the shape of a request body; every problem is named by its field."""
        if not isinstance(body, dict):
            raise InvalidInput({"body": "must be a JSON object"})
        known = {"inputs", "priority", "tags", "data", "run_at", "idempotency_key", "preview", "video"}
        errors = {k: "is not a known field" for k in body if k not in known}
        request = cls(**extra)
        request.inputs = body.get("inputs") or {}
        if not isinstance(request.inputs, dict):
            errors["inputs"] = "must be an object"
        request.priority = body.get("priority")
        if request.priority is not None and request.priority not in PRIORITIES:
            errors["priority"] = f"must be one of {', '.join(PRIORITIES)}"
        request.tags = body.get("tags") or []
        if not isinstance(request.tags, list) or not all(isinstance(x, str) and len(x) <= 100 for x in request.tags):
            errors["tags"] = "must be a list of strings of at most 100 characters"
        request.data = body.get("data") or {}
        if not isinstance(request.data, dict) or len(json.dumps(request.data)) > 100_000:
            errors["data"] = "must be an object of at most 100000 characters as JSON"
        elif reserved := sorted(RESERVED_DATA & set(request.data)):
            errors[f"data.{reserved[0]}"] = "is set by the orchestrator (re-runs, schedules, triggers); use another key"
        request.run_at = _when(body.get("run_at"), errors)
        key = body.get("idempotency_key")
        if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 200):
            errors["idempotency_key"] = "must be a string of 1 to 200 characters"
        request.idempotency_key = key
        request.preview = bool(body.get("preview", False))
        request.video = body.get("video", False)
        if not isinstance(request.video, bool):
            errors["video"] = "must be true or false"
        if errors:
            raise InvalidInput(errors)
        return request


def _when(value: Any, errors: dict[str, str]) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        errors["run_at"] = "must be an ISO 8601 date and time, such as 2026-01-01T08:00:00Z"
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


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


async def create(svc: Services, name: str, request: JobRequest) -> tuple[dict[str, Any], bool]:
    """Create and enqueue a job; returns (job, created). An idempotency_key seen before returns that job."""
    version = await svc.catalog.get(name)
    runbook = version.runbook
    if runbook.status == "draft" and not request.preview:
        raise OrchestratorError(f"Runbook {name} is a draft: it can only be run as a preview.")
    key = scoped_key(request)
    if key and (existing := await _by_key(svc, name, key)):
        return existing, False
    clean = job_inputs.validate(
        runbook.inputs,
        request.inputs,
        max_records=svc.settings.max_records,
        max_records_bytes=svc.settings.max_records_bytes,
    )
    await count_job(svc, request.owner, request.actor, request.source)  # a job it will make, not a refused one
    digest = _inputs_hash(svc, clean)
    job_id, now = new_id(), utcnow()
    attachments = _store_files(svc, job_id, runbook.inputs, clean)
    public, secret = job_inputs.split_secrets(runbook.inputs, clean)
    status = JobStatus.SCHEDULED if request.run_at and request.run_at > now else JobStatus.QUEUED
    priority = request.priority or runbook.settings.priority
    row = {
        "id": job_id,
        "runbook": name,
        "version_id": version.id,
        "runbook_version": version.number,
        "status": status.value,
        "priority": priority,
        "source": request.source,
        "created_by": request.actor,
        "owner": request.owner,
        "inputs": public,
        "secret_inputs": svc.box.seal(secret),
        "tags": request.tags,
        "data": request.data,
        "created_at": now,
        "updated_at": now,
        "scheduled_at": request.run_at,
        "parent_id": request.parent_id,
        "idempotency_key": key,
        "inputs_hash": digest,
        "preview": request.preview,
        "video": request.video or runbook.settings.video,
        "metrics": {},
        "record_counts": {},
    }
    steps = [(step.id, step.name, step.action) for step in runbook.steps]
    try:
        await _insert(svc, row, steps, attachments, dedupe=runbook.settings.dedupe == "inputs")
    except BaseException as exc:
        if attachments:  # the files were written first: a job refused (a duplicate, say) keeps none
            svc.store.delete_job(job_id)
        if isinstance(exc, IntegrityError) and key and (existing := await _by_key(svc, name, key)):
            return existing, False
        raise
    await _enqueue(svc, row, runbook.settings.concurrency)
    async with reading(svc.engine) as conn:
        return await job_view(conn, job_id, svc.settings.job_records), True


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


def _store_files(svc: Services, job_id: str, specs: dict[str, Any], clean: dict[str, Any]) -> list[dict[str, Any]]:
    """Save file inputs as the job's attachment artifacts; the input becomes a reference to its file."""
    rows = []
    for name, spec in specs.items():
        value = clean.get(name)
        if spec.type == "file" and isinstance(value, dict) and "content" in value:
            stored = svc.store.save(
                job_id, "attachment", value["filename"], value["content"], mime_type=value.get("content_type") or None
            )
            rows.append(stored.row)
            clean[name] = {"artifact_id": stored.row["id"], "name": stored.row["name"], "size": stored.row["size"]}
    return rows


def _inputs_hash(svc: Services, clean: dict[str, Any]) -> str:
    """Equal for equal inputs (secrets included), keyed with the server's secret so it reveals nothing."""
    text = json.dumps(clean, sort_keys=True, default=repr)
    return hmac.new(svc.settings.secret_key.encode(), text.encode(), hashlib.sha256).hexdigest()


async def _insert(
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


async def _enqueue(svc: Services, row: dict[str, Any], limit: int | None) -> None:
    """Enqueue a new job on arq (in its runbook's line too when the runbook has a concurrency
    limit) and announce it; the row, already stored, is the truth if Redis fails."""
    job_id, run_at = row["id"], row.get("scheduled_at")
    try:
        if limit and not (run_at and run_at > row["created_at"]):
            await limits.join_line(svc.redis, row["runbook"], limit, job_id, row["created_at"], row["priority"])
        await queue.enqueue(svc.redis, job_id, 1, row["priority"], run_at)
    except Exception as exc:  # noqa: BLE001 - the row is the truth; the reconciler enqueues it later
        log.warning("job %s stored but not enqueued (%s); it will be enqueued when Redis answers", job_id, exc)
    await publish(svc.redis, [job_id])


async def _by_key(svc: Services, name: str, key: str) -> dict[str, Any] | None:
    async with reading(svc.engine) as conn:
        job_id = (
            await conn.execute(select(t.jobs.c.id).where(t.jobs.c.runbook == name, t.jobs.c.idempotency_key == key))
        ).scalar()
        return await job_view(conn, job_id, svc.settings.job_records) if job_id else None


async def get(svc: Services, job_id: str) -> dict[str, Any]:
    async with reading(svc.engine) as conn:
        return await job_view(conn, job_id, svc.settings.job_records)


@dataclass
class JobFilter:
    status: list[str] = field(default_factory=list)
    runbook: str | None = None
    q: str | None = None
    tag: str | None = None
    source: str | None = None
    start_from: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    start: int = 0


#: What the job list reads of each row: not its inputs, sealed secrets or checkpoint (they can be large).
LISTED = [c for c in t.jobs.c if c.name not in ("inputs", "secret_inputs", "checkpoint", "inputs_hash")]


async def list_jobs(svc: Services, flt: JobFilter) -> dict[str, Any]:
    where: list[ColumnElement[bool]] = []
    if flt.status:
        where.append(t.jobs.c.status.in_(flt.status))
    if flt.runbook:
        where.append(t.jobs.c.runbook == flt.runbook)
    if flt.source:
        where.append(t.jobs.c.source == flt.source)
    if flt.q:  # case-insensitive on both databases (SQLite's LIKE already is)
        columns = (t.jobs.c.runbook, t.jobs.c.external_id)
        if svc.engine.dialect.name == "postgresql":
            where.append(or_(*(c.icontains(flt.q, autoescape=True) for c in columns)))
        else:
            where.append(or_(*(c.contains(flt.q, autoescape=True) for c in columns)))
    if flt.tag:
        where.append(_has_tag(svc.engine.dialect.name, flt.tag))
    if flt.start_from:
        where.append(t.jobs.c.created_at >= flt.start_from)
    if flt.until:
        where.append(t.jobs.c.created_at < flt.until)
    condition = and_(*where) if where else None
    query = select(*LISTED).order_by(t.jobs.c.created_at.desc(), t.jobs.c.id.desc())
    count = select(func.count()).select_from(t.jobs)
    if condition is not None:
        query, count = query.where(condition), count.where(condition)
    async with reading(svc.engine) as conn:
        rows = (await conn.execute(query.offset(flt.start).limit(flt.limit))).mappings().all()
        total = (await conn.execute(count)).scalar() or 0
    items = [job_summary(r) for r in rows]
    return {"items": items, "total": total, "start": flt.start, "count": len(items)}


def _has_tag(dialect: str, tag: str) -> ColumnElement[bool]:
    """Tags are a JSON list on the job: the database looks inside it (so paging and totals agree)."""
    if dialect == "postgresql":
        return text("CAST(jobs.tags AS JSONB) ? :tag").bindparams(tag=tag)  # type: ignore[return-value]
    # a plain text match first (cheap), then the exact test on the rows it lets through
    pattern = json.dumps(tag).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    exact = text("EXISTS (SELECT 1 FROM json_each(jobs.tags) WHERE json_each.value = :tag)").bindparams(tag=tag)
    return and_(cast(t.jobs.c.tags, Text).like(f"%{pattern}%", escape="\\"), exact)  # type: ignore[arg-type]


async def act(
    svc: Services,
    job_id: str,
    action: Action,
    actor: str,
    comment: str | None = None,
    seen: JobStatus | None = None,
    human: str | None = None,
    request_seen: str | None = None,
) -> dict[str, Any]:
    """A person's action on a job: one compare-and-set transition, an audit row, an event, a signal.

    The move is made from the status the person saw (`seen`, else the status when the request
    arrived): of two people acting on what they both saw, one wins and the other gets 409.
    `human` is the person behind `actor` (a token's owner, say); self-approval compares it with the
    job's owner. `request_seen` is the `requested_at` of the approval request the person decided on:
    a decision never lands on a later request they did not see.
    """
    sources, target = ACTIONS[action]
    async with reading(svc.engine) as conn:
        found = (
            await conn.execute(
                select(t.jobs.c.status, t.jobs.c.owner, t.jobs.c.version_id, t.jobs.c.runbook, t.jobs.c.source).where(
                    t.jobs.c.id == job_id
                )
            )
        ).first()
    if found is None:
        raise JobNotFound(f"No job has the id {job_id}.")
    if found.version_id is None:  # a run reported by another tool: its status is that tool's to report
        await _audit_refused(svc, job_id, action, actor, comment, "refused: reported run")
        raise InvalidTransition(
            f"Job {job_id} was reported by {found.source} and is not run here: nobody can {action.value} it here.",
            status=found.status,
            allowed_actions=[],
        )
    if action is Action.APPROVE and found.owner is not None and found.owner == (human or actor):
        runbook = (await load_version(svc.engine, found.version_id)).runbook
        if not runbook.settings.self_approval:
            await _audit_refused(svc, job_id, action, actor, comment, "refused: self-approval")
            raise Forbidden(
                f"Runbook {found.runbook} needs someone other than the person who owns the job ({found.owner}) "
                "to approve it (settings.self_approval: false)."
            )
    seen = seen or JobStatus(found.status)
    events: list[Pending] = []
    values: dict[str, Any] = {"finished_at": utcnow()} if target.finished else {}
    if action is Action.CANCEL:
        values["summary"] = f"Cancelled by {actor}."
    try:
        async with writing(svc.engine) as conn:
            evidence = None
            if action in (Action.APPROVE, Action.REJECT):
                values.update(await _decision(conn, job_id, action, actor, comment, request_seen))
                evidence = values["approval"].get("screenshot_sha256")  # what the approver was shown
            await move(conn, job_id, target, expected=set(sources) & {seen}, values=values, events=events)
            await conn.execute(
                insert(t.audit).values(
                    job_id=job_id,
                    actor=actor,
                    action=action.value,
                    comment=comment,
                    outcome="ok",
                    at=utcnow(),
                    evidence=evidence,
                )
            )
            await append(conn, events)
    except Conflict:
        await _audit_refused(svc, job_id, action, actor, comment, "refused: a later request")
        raise
    except InvalidTransition:
        status = await _audit_refused(svc, job_id, action, actor, comment)
        allowed = [a.value for a in allowed_actions(status)]
        raise InvalidTransition(
            f"Cannot {action.value} job {job_id}: it is {status.value}; "
            f"allowed now: {', '.join(allowed) or 'nothing'}.",
            status=status.value,
            allowed_actions=allowed,
        ) from None
    if action is Action.CANCEL:
        await _cancel_children(svc, job_id, actor)
    try:  # the worker also polls the status, so a lost signal only delays it
        await svc.redis.publish(CONTROL_CHANNEL, json.dumps({"job_id": job_id, "action": action.value}))
    except (RedisError, OSError) as exc:
        log.warning("job %s: %s recorded, but the worker could not be signalled (%s)", job_id, action.value, exc)
    await publish(svc.redis, [job_id])
    return await get(svc, job_id)


async def _cancel_children(svc: Services, job_id: str, actor: str) -> None:
    """Cancelling a job cancels the child jobs it started (and theirs) that have not finished."""
    active = [s.value for s in JobStatus if not s.finished]
    async with reading(svc.engine) as conn:
        children = (
            (await conn.execute(select(t.jobs.c.id).where(t.jobs.c.parent_id == job_id, t.jobs.c.status.in_(active))))
            .scalars()
            .all()
        )
    for child in children:
        with contextlib.suppress(InvalidTransition):  # it finished meanwhile
            await act(svc, child, Action.CANCEL, actor, f"Its parent job {job_id} was cancelled.")


async def _decision(
    conn: Any, job_id: str, action: Action, actor: str, comment: str | None, request_seen: str | None = None
) -> dict[str, Any]:
    """The job's approval record with the decision; a rejection is also the job's error."""
    query = select(t.jobs.c.approval).where(t.jobs.c.id == job_id).with_for_update()  # held until the move
    approval = (await conn.execute(query)).scalar() or {}
    if request_seen is not None and approval.get("requested_at") != request_seen:
        raise Conflict(
            f"The approval you decided on (asked at {request_seen}) has been decided already; job {job_id} "
            f"now asks: {approval.get('message') or 'another approval'}. Look at it and decide again.",
            status=JobStatus.WAITING_FOR_APPROVAL.value,
        )
    decision = "approved" if action is Action.APPROVE else "rejected"
    values: dict[str, Any] = {
        "approval": {**approval, "decision": decision, "by": actor, "comment": comment, "decided_at": iso(utcnow())}
    }
    if action is Action.REJECT:
        message = f"Rejected by {actor}" + (f": {comment}" if comment else ".")
        values.update(error_message=message, error_step_id=approval.get("step_id"), summary=message)
    return values


async def _audit_refused(
    svc: Services, job_id: str, action: Action, actor: str, comment: str | None, outcome: str = "refused"
) -> JobStatus:
    """Record a refused action; return the job's status now."""
    async with writing(svc.engine) as conn:
        status = (await conn.execute(select(t.jobs.c.status).where(t.jobs.c.id == job_id))).scalar()
        if status is None:
            raise JobNotFound(f"No job has the id {job_id}.")
        await conn.execute(
            insert(t.audit).values(
                job_id=job_id, actor=actor, action=action.value, comment=comment, outcome=outcome, at=utcnow()
            )
        )
    return JobStatus(status)


async def rerun(
    svc: Services,
    job_id: str,
    actor: str,
    records: str | None = None,
    from_step: str | None = None,
    human: str | None = None,
) -> dict[str, Any]:
    """A new job with the same inputs (secrets included) and the same locked runbook version;
    `records="failed"` runs its loop over only the records that failed, and `from_step` starts at
    that step with the values captured before it (and the page it was on, where that is known)."""
    if records not in (None, "failed"):
        raise InvalidInput({"records": "must be failed"})
    async with reading(svc.engine) as conn:
        old = (await conn.execute(select(t.jobs).where(t.jobs.c.id == job_id))).mappings().first()
        if old is None:
            raise JobNotFound(f"No job has the id {job_id}.")
        if old["version_id"] is None:
            raise InvalidTransition(
                f"Job {job_id} was reported by {old['source']}, not run here: it cannot be re-run here.",
                status=old["status"],
            )
        steps = (
            (await conn.execute(select(t.steps).where(t.steps.c.job_id == job_id).order_by(t.steps.c.position)))
            .mappings()
            .all()
        )
        failed = (
            (
                await conn.execute(
                    select(t.records.c.record_id).where(t.records.c.job_id == job_id, t.records.c.status == "failed")
                )
            )
            .scalars()
            .all()
        )
    # what an earlier re-run asked for is not asked again
    data = {k: v for k, v in old["data"].items() if k not in ("from_step", "only_records")} | {"rerun_of": job_id}
    if records == "failed":
        if not failed:
            raise InvalidTransition(f"Job {job_id} has no failed records to run again.", status=old["status"])
        data["only_records"] = list(failed)
    version = await load_version(svc.engine, old["version_id"])
    carried, checkpoint = _carried(steps, from_step, old["checkpoint"], version.runbook) if from_step else ({}, None)
    if from_step:
        data["from_step"] = from_step
    await count_job(svc, human, actor, "rerun")  # a re-run it will make, not a refused one
    new_job, now = new_id(), utcnow()
    row = {
        k: old[k]
        for k in (
            "runbook",
            "version_id",
            "runbook_version",
            "priority",
            "inputs",
            "secret_inputs",
            "tags",
            "parent_id",
            "video",
        )
    }
    attachments = await _copy_files(svc, job_id, new_job, version.runbook.inputs, row)
    row.update(
        id=new_job,
        status=JobStatus.QUEUED.value,
        source="rerun",
        created_by=actor,
        owner=human or actor,  # who re-runs it owns the re-run (and may not approve it, if so set)
        created_at=now,
        updated_at=now,
        metrics={},
        record_counts={},
        data=data,
        checkpoint=checkpoint,
        inputs_hash=old["inputs_hash"],
    )
    try:
        await _insert(
            svc, row, [(st["step_id"], st["name"], st["action"]) for st in steps], attachments, carried=carried
        )
    except BaseException:
        if attachments:
            svc.store.delete_job(new_job)
        raise
    await _enqueue(svc, row, version.runbook.settings.concurrency)
    return await get(svc, new_job)


def _asks_people(step: StepBase | None) -> bool:
    """Whether running the step may ask for an approval: an approval, a child job (its runbook may
    ask), or a loop with either inside."""
    if step is None:
        return False
    if step.action in ("approval", "run_runbook"):
        return True
    return any(_asks_people(nested) for nested in getattr(step, "steps", None) or ())


async def _copy_files(
    svc: Services, old_job: str, new_job: str, specs: dict[str, Any], row: dict[str, Any]
) -> list[dict[str, Any]]:
    """A re-run gets its own copies of the file inputs (so its upload steps find them, and deleting
    the old job leaves it whole); `row["inputs"]` then refers to the copies."""
    inputs, copies = dict(row["inputs"]), []
    for name, spec in specs.items():
        ref = inputs.get(name)
        if spec.type != "file" or not isinstance(ref, dict) or "artifact_id" not in ref:
            continue
        async with reading(svc.engine) as conn:
            old = (
                (
                    await conn.execute(
                        select(t.artifacts).where(
                            t.artifacts.c.id == ref["artifact_id"], t.artifacts.c.job_id == old_job
                        )
                    )
                )
                .mappings()
                .first()
            )
        if old is None:
            continue
        source = svc.store.path_of(old["path"])
        stored = await asyncio.to_thread(
            svc.store.save_file, new_job, "attachment", old["name"], source, mime_type=old["mime_type"]
        )
        copies.append(stored.row)
        inputs[name] = {**ref, "artifact_id": stored.row["id"]}
    row["inputs"] = inputs
    return copies


def _carried(
    steps: Sequence[Any], from_step: str, checkpoint: dict[str, Any] | None, runbook: Runbook
) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """The steps before `from_step` as they ended (their captured values carry over; a failed one
    counts as skipped), and the old checkpoint when the page it holds was reached before that step.
    An approval is never carried over: it stays pending, so the re-run asks it again before it goes on.
    A step that holds approvals (a loop, a child job) and did not succeed cannot be passed over: a
    re-run from after it is refused (it would go on without their decisions, or do them all again)."""
    ids = [st["step_id"] for st in steps]
    if from_step not in ids:
        raise InvalidInput({"from_step": f"must be a step of this job: {', '.join(ids)}"})
    position = ids.index(from_step)
    defined = {step.id: step for step in runbook.steps}
    carried = {}
    for st in steps[:position]:
        if st["action"] == "approval":
            continue
        if st["status"] != StepStatus.SUCCESS.value and _asks_people(defined.get(st["step_id"])):
            raise InvalidInput(
                {
                    "from_step": f"must not lie after step {st['step_id']}, which asks for approvals and "
                    f"ended {st['status']}: re-run from {st['step_id']} (or ?records=failed)"
                }
            )
        status = st["status"] if st["status"] in (StepStatus.SUCCESS.value, StepStatus.SKIPPED.value) else "skipped"
        carried[st["step_id"]] = {"status": status, "captured": st["captured"], "error": None}
    usable = checkpoint and int((checkpoint or {}).get("position", position)) < position
    kept = {k: v for k, v in (checkpoint or {}).items() if k != "lost"} if usable else None
    return carried, kept
