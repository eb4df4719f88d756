"""Jobs: create (validate inputs, lock the version, encrypt secrets, enqueue) and act; reading them
(orchestrator.listing) and re-running them (orchestrator.rerun) live beside it."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from orchestrator import approvers, metrics
from orchestrator import inputs as job_inputs
from orchestrator.db import tables as t
from orchestrator.db.engine import reading, writing
from orchestrator.db.tables import utcnow
from orchestrator.errors import (
    Conflict,
    Forbidden,
    InvalidTransition,
    JobNotFound,
    OrchestratorError,
)
from orchestrator.events import Pending, append, publish
from orchestrator.intake import by_key, count_job, enqueue_job, insert_job, new_id, scoped_key
from orchestrator.keys import CONTROL_CHANNEL
from orchestrator.listing import get, list_jobs
from orchestrator.rerun import rerun
from orchestrator.runbooks.catalog import load_version
from orchestrator.schemas.common import validated
from orchestrator.schemas.jobs import CALLER, JobBody, JobFilter, JobRequest
from orchestrator.services import Services
from orchestrator.states import ACTIONS, Action, JobStatus, allowed_actions
from orchestrator.transitions import move
from orchestrator.views import iso, job_view

__all__ = ["JobFilter", "JobRequest", "count_job", "create", "get", "list_jobs", "new_id", "rerun", "requested"]

log = logging.getLogger(__name__)


def requested(body: Any, **who: Any) -> JobRequest:
    """A caller's body of POST /api/v1/runbooks/{name}/jobs (JobBody; a bad field is a 422 naming it),
    with who asks (`source`, `actor`, `owner`)."""
    asked = validated(JobBody, body, context=CALLER)
    return JobRequest(**asked.model_dump(exclude_unset=True), **who)


async def create(svc: Services, name: str, request: JobRequest) -> tuple[dict[str, Any], bool]:
    """Create and enqueue a job; returns (job, created). An idempotency_key seen before returns that job."""
    version = await svc.catalog.get(name)
    runbook = version.runbook
    if runbook.status == "draft" and not request.preview:
        raise OrchestratorError(f"Runbook {name} is a draft: it can only be run as a preview.")
    key = scoped_key(request)
    if key and (existing := await by_key(svc, name, key)):
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
    attachments = await _store_files(svc, job_id, runbook.inputs, clean)
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
        "tags": request.tags or [],
        "data": request.data or {},
        "created_at": now,
        "updated_at": now,
        "scheduled_at": request.run_at,
        "parent_id": request.parent_id,
        "idempotency_key": key,
        "inputs_hash": digest,
        "preview": bool(request.preview),
        "video": request.video or runbook.settings.video,
        "metrics": {},
        "record_counts": {},
    }
    steps = [(step.id, step.name, step.action) for step in runbook.steps]
    try:
        await insert_job(svc, row, steps, attachments, dedupe=runbook.settings.dedupe == "inputs")
    except BaseException as exc:
        if attachments:  # the files were written first: a job refused (a duplicate, say) keeps none
            await svc.store.delete_job(job_id)
        if isinstance(exc, IntegrityError) and key and (existing := await by_key(svc, name, key)):
            return existing, False
        raise
    await enqueue_job(svc, row, runbook.settings.concurrency)
    async with reading(svc.engine) as conn:
        return await job_view(conn, job_id, svc.settings.job_records), True


async def _store_files(
    svc: Services, job_id: str, specs: dict[str, Any], clean: dict[str, Any]
) -> list[dict[str, Any]]:
    """Save file inputs as the job's attachment artifacts; the input becomes a reference to its file."""
    rows = []
    for name, spec in specs.items():
        value = clean.get(name)
        if spec.type == "file" and isinstance(value, dict) and "content" in value:
            row = await svc.store.save(
                job_id, "attachment", value["filename"], value["content"], mime_type=value.get("content_type") or None
            )
            rows.append(row)
            clean[name] = {"artifact_id": row["id"], "name": row["name"], "size": row["size"]}
    return rows


def _inputs_hash(svc: Services, clean: dict[str, Any]) -> str:
    """Equal for equal inputs (secrets included), keyed with the server's secret so it reveals nothing."""
    text = json.dumps(clean, sort_keys=True, default=repr)
    return hmac.new(svc.settings.secret_key.encode(), text.encode(), hashlib.sha256).hexdigest()


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
    if action is Action.APPROVE:
        await _check_self_approval(svc, found, job_id, actor, human or actor, comment)
    seen = seen or JobStatus(found.status)
    events: list[Pending] = []
    values: dict[str, Any] = {"finished_at": utcnow()} if target.finished else {}
    if action is Action.CANCEL:
        values["summary"] = f"Cancelled by {actor}."
    ask = Asked(job_id, action, actor, human or actor, comment, request_seen)
    try:
        async with writing(svc.engine) as conn:
            outcome = await _record(conn, ask, target, set(sources) & {seen}, values, events)
            await append(conn, events)
    except (NotAnApprover, ApprovedAlready, UnreadableApproval) as refused:
        await _audit_refused(svc, job_id, action, actor, comment, refused.outcome)
        raise
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
    if action is Action.CANCEL and seen in (JobStatus.QUEUED, JobStatus.SCHEDULED):  # no run will count it
        await metrics.add_quietly(svc.redis, metrics.job_finished(found.runbook, JobStatus.CANCELLED.value))
    if action is Action.CANCEL:
        await _cancel_children(svc, job_id, actor)
    if outcome != "ok":  # a vote: the job still waits, and its run has nothing to do
        await publish(svc.redis, [job_id])
        return await get(svc, job_id)
    try:  # the worker also polls the status, so a lost signal only delays it
        await svc.redis.publish(CONTROL_CHANNEL, json.dumps({"job_id": job_id, "action": action.value}))
    except (RedisError, OSError) as exc:
        log.warning("job %s: %s recorded, but the worker could not be signalled (%s)", job_id, action.value, exc)
    await publish(svc.redis, [job_id])
    return await get(svc, job_id)


@dataclass(frozen=True)
class Asked:
    """What a person asks of a job (`act`): `human` is the person behind `actor`."""

    job_id: str
    action: Action
    actor: str
    human: str
    comment: str | None
    request_seen: str | None


async def _check_self_approval(
    svc: Services, found: Any, job_id: str, actor: str, human: str, comment: str | None
) -> None:
    """settings.self_approval: false: nobody approves a job they own (compared as people)."""
    if found.owner is None or found.owner != human:
        return
    runbook = (await load_version(svc.engine, found.version_id)).runbook
    if not runbook.settings.self_approval:
        await _audit_refused(svc, job_id, Action.APPROVE, actor, comment, "refused: self-approval")
        raise Forbidden(
            f"Runbook {found.runbook} needs someone other than the person who owns the job ({found.owner}) "
            "to approve it (settings.self_approval: false)."
        )


async def _record(
    conn: Any, ask: Asked, target: JobStatus, expected: set[JobStatus], values: dict[str, Any], events: list[Pending]
) -> str:
    """In the action's transaction: the move (or, for an approval that needs more approvers, the vote)
    and its audit row; returns the row's outcome."""
    outcome, evidence = "ok", None
    if ask.action in (Action.APPROVE, Action.REJECT):
        decided = await _decision(conn, ask)
        approval = decided["approval"]
        evidence = approval.get("screenshot_sha256")  # what the approver was shown
        if approval.get("decision") is None:  # a vote of a `required: N` approval: the job waits on
            await _vote(conn, ask.job_id, expected, approval, events)
            outcome = f"ok: approval {len(approvers.votes(approval))} of {approvers.required(approval)}"
        else:
            values.update(decided)
    if outcome == "ok":
        await move(conn, ask.job_id, target, expected=expected, values=values, events=events)
    await conn.execute(
        insert(t.audit).values(
            job_id=ask.job_id,
            actor=ask.actor,
            action=ask.action.value,
            comment=ask.comment,
            outcome=outcome,
            at=utcnow(),
            evidence=evidence,
        )
    )
    return outcome


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


class NotAnApprover(Forbidden):
    """Only the approvers the approval step names may decide on it."""

    outcome = "refused: not an approver"


class NotAPerson(NotAnApprover):
    """An approval that needs several distinct people counts only people's decisions."""

    outcome = "refused: not a person"


class ApprovedAlready(Conflict):
    """You approved this request already: the other approvals it needs must come from other people."""

    outcome = "refused: approved already"


class UnreadableApproval(Conflict):
    """The job's approval record cannot be read, so nobody can decide on it here."""

    outcome = "refused: unreadable approval"


async def _decision(conn: Any, ask: Asked) -> dict[str, Any]:
    """The job's approval record with this person's decision (orchestrator/approvers.py): an approval
    is a vote while the request needs more distinct approvers (no `decision` yet), else the decision; a
    rejection is the decision at once, and the job's error. Refuses a record it cannot read, a person the
    approvers do not name, a principal that is no person where several people must decide, a second
    approval by one person, and a decision on a request the person did not see."""
    job_id, actor, comment, request_seen = ask.job_id, ask.actor, ask.comment, ask.request_seen
    query = select(t.jobs.c.status, t.jobs.c.approval).where(t.jobs.c.id == job_id).with_for_update()
    row = (await conn.execute(query)).first()  # locked until the move
    if row is None or row.status != JobStatus.WAITING_FOR_APPROVAL.value:
        raise InvalidTransition()  # nothing to decide now: answered with the job's status and actions
    approval = row.approval or {}
    if not approvers.readable(approval):  # fails closed: no check below can be trusted on it
        raise UnreadableApproval(
            f"The approval record of job {job_id} cannot be read, so nobody can decide on it: "
            "cancel the job, or let its timeout decide.",
            status=JobStatus.WAITING_FOR_APPROVAL.value,
        )
    if request_seen is not None and approval.get("requested_at") != request_seen:
        raise Conflict(
            f"The approval you decided on (asked at {request_seen}) has been decided already; job {job_id} "
            f"now asks: {approval.get('message') or 'another approval'}. Look at it and decide again.",
            status=JobStatus.WAITING_FOR_APPROVAL.value,
        )
    who = await approvers.person(conn, ask.human)
    if not approvers.is_approver(approval, who):
        raise NotAnApprover(
            f"Only {approvers.listed(approvers.named(approval))} may decide on the approval of job {job_id} "
            f"(step {approval.get('step_id')}); {who.name} is not one of them."
        )
    if not approvers.counts(approval, who):
        raise NotAPerson(
            f"The approval of job {job_id} needs {approvers.required(approval)} distinct people, and {who.name} "
            "is no person (a token that acts for nobody, or the command line): decide as a signed-in user, "
            "or with a token that acts for you."
        )
    now = iso(utcnow())
    if ask.action is Action.REJECT:
        message = f"Rejected by {actor}" + (f": {comment}" if comment else ".")
        rejected = {**approval, "decision": "rejected", "by": actor, "comment": comment, "decided_at": now}
        return {
            "approval": rejected,
            "error_message": message,
            "error_step_id": approval.get("step_id"),
            "summary": message,
        }
    if earlier := approvers.vote_of(approval, who):
        raise ApprovedAlready(
            f"{who.name} approved job {job_id} already (at {earlier.get('at')}); it needs "
            f"{approvers.still_needed(approval)} more approval(s), each from another person.",
            status=JobStatus.WAITING_FOR_APPROVAL.value,
        )
    vote = {"by": who.name, "at": now, "comment": comment, "evidence": approval.get("screenshot_sha256")}
    approval = {**approval, "votes": [*approvers.votes(approval), vote]}
    if approvers.still_needed(approval) > 0:
        return {"approval": approval}
    return {"approval": {**approval, "decision": "approved", "by": actor, "comment": comment, "decided_at": now}}


async def _vote(
    conn: Any, job_id: str, expected: set[JobStatus], approval: dict[str, Any], events: list[Pending]
) -> None:
    """Record a vote: the approval column, compare-and-set on the job still waiting for approval (the
    status the person saw), and an `approval` event so that pages show it."""
    waiting = JobStatus.WAITING_FOR_APPROVAL
    changed = await conn.execute(
        update(t.jobs)
        .where(t.jobs.c.id == job_id, t.jobs.c.status == waiting.value)
        .values(approval=approval, updated_at=utcnow())
    )
    if waiting not in expected or changed.rowcount != 1:
        raise InvalidTransition()
    events.append(Pending(job_id, "approval", {"job_id": job_id, **approval}))


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
