"""A runbook's run history in the shape of SPEC §6: pages of entries with links, and deletion."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from sqlalchemy import and_, delete, func, insert, select
from sqlalchemy.engine import RowMapping

from orchestrator.db import tables as t
from orchestrator.db.engine import reading, writing
from orchestrator.db.tables import utcnow
from orchestrator.errors import InvalidTransition, JobNotFound, RunbookNotFound
from orchestrator.schemas.common import query_of
from orchestrator.schemas.runbooks import HistoryEntry, HistoryPage, HistoryQuery
from orchestrator.services import Services
from orchestrator.states import JobStatus
from orchestrator.views import iso

SORTS = {
    "createdAt": (t.jobs.c.created_at.asc(), t.jobs.c.id.asc()),
    "-createdAt": (t.jobs.c.created_at.desc(), t.jobs.c.id.desc()),
    "duration": (t.jobs.c.duration_s.is_(None), t.jobs.c.duration_s.asc(), t.jobs.c.id.asc()),
    "-duration": (t.jobs.c.duration_s.is_(None), t.jobs.c.duration_s.desc(), t.jobs.c.id.desc()),
}
ACTIVE = {JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED, JobStatus.WAITING_FOR_APPROVAL}


def parse_query(params: Any) -> HistoryQuery:
    """sort, limit, start and previews from query parameters; a bad one is a 422 naming it."""
    return query_of(HistoryQuery, params)


async def page(
    svc: Services, runbook: str, sort: str, limit: int, start: int, previews: bool = False
) -> dict[str, Any]:
    """A page of the runbook's jobs; preview runs only when asked for."""
    await _known(svc, runbook)
    where = t.jobs.c.runbook == runbook
    if not previews:
        where = and_(where, t.jobs.c.preview.is_(False))
    async with reading(svc.engine) as conn:
        total = (await conn.execute(select(func.count()).select_from(t.jobs).where(where))).scalar() or 0
        rows = (
            (await conn.execute(select(t.jobs).where(where).order_by(*SORTS[sort]).offset(start).limit(limit)))
            .mappings()
            .all()
        )
        steps = await _steps(conn, [r["id"] for r in rows])
    base = f"/api/v1/runbooks/{runbook}/history"
    links: dict[str, Any] = {"self": {"href": _href(base, start, limit, sort, previews)}}
    if start + limit < total:
        links["next"] = {"href": _href(base, start + limit, limit, sort, previews)}
    if start > 0:
        links["prev"] = {"href": _href(base, max(0, start - limit), limit, sort, previews)}
    entries = [_entry(r, steps.get(r["id"], [])) for r in rows]
    shown = {
        "_links": links,
        "_embedded": {"job-history": entries},
        "start": start,
        "count": len(entries),
        "total": total,
    }
    answer = HistoryPage.model_validate(shown).model_dump(mode="json", by_alias=True)
    answer["_links"] = {k: v for k, v in answer["_links"].items() if v is not None}
    return answer


async def one(svc: Services, runbook: str, job_id: str) -> dict[str, Any]:
    async with reading(svc.engine) as conn:
        row = (
            (await conn.execute(select(t.jobs).where(t.jobs.c.id == job_id, t.jobs.c.runbook == runbook)))
            .mappings()
            .first()
        )
        if row is None:
            raise JobNotFound(f"Runbook {runbook} has no job {job_id}.")
        steps = await _steps(conn, [job_id])
    return entry(row, steps.get(job_id, []))


async def remove(svc: Services, runbook: str, job_id: str, actor: str) -> None:
    """Delete a finished job with its steps, records, events, artifact rows and files. Its audit log
    stays (it is append-only), with one more entry: who deleted what, and when."""
    async with writing(svc.engine) as conn:
        row = (
            await conn.execute(
                select(t.jobs.c.status, t.jobs.c.created_at, t.jobs.c.owner).where(
                    t.jobs.c.id == job_id, t.jobs.c.runbook == runbook
                )
            )
        ).first()
        if row is None:
            raise JobNotFound(f"Runbook {runbook} has no job {job_id}.")
        if JobStatus(row.status) in ACTIVE:
            raise InvalidTransition(f"Job {job_id} is {row.status}: cancel it before deleting it.", status=row.status)
        files = (await conn.execute(select(func.count()).where(t.artifacts.c.job_id == job_id))).scalar() or 0
        for table in (t.steps, t.records, t.artifacts, t.events, t.notifications, t.sla_misses):
            await conn.execute(delete(table).where(table.c.job_id == job_id))
        await conn.execute(delete(t.jobs).where(t.jobs.c.id == job_id))
        what = (
            f"Deleted job {job_id} of {runbook} ({row.status}, created {iso(row.created_at)}"
            f"{f' by {row.owner}' if row.owner else ''}) with its {files} files."
        )
        await conn.execute(
            insert(t.audit).values(job_id=job_id, actor=actor, action="delete", comment=what, outcome="ok", at=utcnow())
        )
    await svc.store.delete_job(job_id)  # after the commit: a failed delete keeps the files


def entry(row: RowMapping, steps: list[RowMapping]) -> dict[str, Any]:
    return _entry(row, steps).model_dump(mode="json")


def _entry(row: RowMapping, steps: list[RowMapping]) -> HistoryEntry:
    began = row["started_at"] or row["created_at"]
    error = row["error_message"]
    return HistoryEntry.model_validate(
        {
            "id": row["id"],
            "runbook": row["runbook"],
            "runbook_version": row["runbook_version"],
            "status": row["status"],
            "success": row["status"] == JobStatus.COMPLETED.value,
            "warnings": bool(row["warnings"]),
            "duration": [began, row["finished_at"]],
            "data": row["data"] or {},
            "summary": row["summary"],
            "error": {"message": error, "step_id": row["error_step_id"]} if error else None,
            "progress": [_progress(s) for s in steps],
            "createdAt": row["created_at"],
        }
    )


def _progress(step: RowMapping) -> dict[str, Any]:
    status = step["status"]
    return {
        "task": {"key": step["action"], "opts": {"id": step["step_id"], "name": step["name"] or step["step_id"]}},
        "result": {
            "key": status,
            "success": status == "success",
            "status": status,
            "message": step["error"] or "",
        },
    }


async def _steps(conn: Any, job_ids: list[str]) -> dict[str, list[RowMapping]]:
    found: dict[str, list[RowMapping]] = {job_id: [] for job_id in job_ids}
    if not job_ids:
        return found
    rows = (
        await conn.execute(
            select(t.steps).where(t.steps.c.job_id.in_(job_ids)).order_by(t.steps.c.job_id, t.steps.c.position)
        )
    ).mappings()
    for row in rows:
        found[row["job_id"]].append(row)
    return found


async def _known(svc: Services, runbook: str) -> None:
    """A runbook has a history when it is loaded now or ever had a version (its file may be gone)."""
    if any(v.runbook.name == runbook for v in svc.catalog.versions()):
        return
    async with reading(svc.engine) as conn:
        found = (await conn.execute(select(t.versions.c.id).where(t.versions.c.runbook == runbook).limit(1))).first()
    if found is None:
        raise RunbookNotFound(f"No runbook is named {runbook!r}.")


def _href(base: str, start: int, limit: int, sort: str, previews: bool = False) -> str:
    query: dict[str, Any] = {"start": start, "limit": limit, "sort": sort}
    if previews:
        query["previews"] = "include"
    return f"{base}?{urlencode(query)}"
