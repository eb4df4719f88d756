"""The approval inbox: every job waiting for a decision that a person may make now, oldest request
first (GET /api/v1/approvals, the /approvals page and the count in every page's header).

A person may decide a request when they hold job:approve, its `approvers` name them (or it names
none), they have not approved it already, and, for a job they own, its runbook allows self-approval
(orchestrator/approvers.py; orchestrator/jobs.py `act` applies the same rules when they decide)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import approvers
from orchestrator.approvers import Person
from orchestrator.auth import APPROVE, Principal
from orchestrator.db import tables as t
from orchestrator.db.engine import reading
from orchestrator.runbooks.catalog import load_version
from orchestrator.states import JobStatus

#: The most requests one answer lists (the oldest); `total` counts them all.
LIMIT = 200

_WAITING = select(
    t.jobs.c.id,
    t.jobs.c.runbook,
    t.jobs.c.runbook_version,
    t.jobs.c.version_id,
    t.jobs.c.owner,
    t.jobs.c.approval,
).where(t.jobs.c.status == JobStatus.WAITING_FOR_APPROVAL.value, t.jobs.c.version_id.is_not(None))


async def decidable(engine: AsyncEngine, principal: Principal) -> list[Any]:
    """The rows (id, runbook, runbook_version, version_id, owner, approval) of the jobs this principal
    may decide now, oldest request first."""
    if not principal.can(APPROVE):
        return []
    who = Person.of(principal)
    async with reading(engine) as conn:
        rows = (await conn.execute(_WAITING)).all()
    mine = [row for row in rows if approvers.may_decide(row.approval or {}, who, True)]
    own = {row.version_id for row in mine if row.owner == who.name}
    barred = {version for version in own if not (await load_version(engine, version)).runbook.settings.self_approval}
    mine = [row for row in mine if not (row.owner == who.name and row.version_id in barred)]
    return sorted(mine, key=lambda row: (str((row.approval or {}).get("requested_at") or ""), row.id))


async def count(engine: AsyncEngine, principal: Principal) -> int:
    return len(await decidable(engine, principal))


async def inbox(engine: AsyncEngine, principal: Principal) -> dict[str, Any]:
    """`{"items": [...], "total"}`: each item the request as the job shows it (its captured values
    masked when the run stored them), with the votes so far, `required` and `approvers`."""
    rows = await decidable(engine, principal)
    return {"items": [_item(row) for row in rows[:LIMIT]], "total": len(rows)}


def _item(row: Any) -> dict[str, Any]:
    """A readable request (orchestrator/approvers.py `readable`) as the inbox shows it; a field of an
    unexpected type is left out rather than break the whole list."""
    approval = row.approval or {}
    shot = approval.get("screenshot_url")
    captured = approval.get("captured")
    return {
        "job_id": row.id,
        "runbook": row.runbook,
        "runbook_version": row.runbook_version,
        "message": _text(approval.get("message")),
        "requested_at": _text(approval.get("requested_at")),
        "step_id": _text(approval.get("step_id")),
        "screenshot_url": shot if isinstance(shot, str) and shot.startswith(f"/api/v1/jobs/{row.id}/") else None,
        "captured": captured if isinstance(captured, dict) else {},
        "votes": [
            {
                "by": v["by"],
                "at": v.get("at", ""),
                "comment": _text(v.get("comment")),
                "evidence": _text(v.get("evidence")),
            }
            for v in approvers.votes(approval)
        ],
        "required": approvers.required(approval),
        "approvers": approvers.named(approval) or None,
    }


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
