"""Reading jobs: one whole job, or a filtered page of the job list."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import ColumnElement, Text, and_, cast, func, or_, select, text

from orchestrator.db import tables as t
from orchestrator.db.engine import reading
from orchestrator.schemas.jobs import JobFilter
from orchestrator.services import Services
from orchestrator.views import job_summary, job_view


async def get(svc: Services, job_id: str) -> dict[str, Any]:
    async with reading(svc.engine) as conn:
        return await job_view(conn, job_id, svc.settings.job_records)


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
