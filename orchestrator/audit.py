"""The audit log, read on its own: every action on every job, deletions included, oldest first.
Rows are only ever appended; a deleted job's entries stay."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, func, select

from orchestrator.db import tables as t
from orchestrator.db.engine import reading
from orchestrator.services import Services
from orchestrator.views import iso


async def listed(
    svc: Services,
    *,
    job_id: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    limit: int = 100,
    start: int = 0,
) -> dict[str, Any]:
    where = [
        column == value
        for column, value in ((t.audit.c.job_id, job_id), (t.audit.c.actor, actor), (t.audit.c.action, action))
        if value
    ]
    condition = and_(True, *where)
    query = select(t.audit).where(condition).order_by(t.audit.c.id).offset(start).limit(limit)
    async with reading(svc.engine) as conn:
        rows = (await conn.execute(query)).mappings().all()
        total = (await conn.execute(select(func.count()).select_from(t.audit).where(condition))).scalar() or 0
    items = [
        {
            "job_id": r["job_id"],
            "at": iso(r["at"]),
            "actor": r["actor"],
            "action": r["action"],
            "comment": r["comment"],
            "outcome": r["outcome"],
            "evidence": r["evidence"],
        }
        for r in rows
    ]
    return {"items": items, "total": total, "start": start, "count": len(items)}
