"""Jobs as users see them: the job object of the API, events and pages."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.config import CAPS
from orchestrator.db import tables as t
from orchestrator.errors import JobNotFound


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def artifact_url(job_id: str, artifact_id: str) -> str:
    return f"/api/v1/jobs/{job_id}/artifacts/{artifact_id}"


def job_summary(row: RowMapping) -> dict[str, Any]:
    """The job's own fields (what lists show), but its inputs: they may be large (records inputs), so
    only the whole job (`job_view`) carries them."""
    error = {"message": row["error_message"], "step_id": row["error_step_id"]} if row["error_message"] else None
    metrics = {
        "steps_succeeded": 0,
        "steps_failed": 0,
        "steps_skipped": 0,
        "retries": 0,
        "duration_s": None,
        **(row["metrics"] or {}),
    }
    counts = {"total": 0, "succeeded": 0, "failed": 0, "skipped": 0, **(row["record_counts"] or {})}
    return {
        "id": row["id"],
        "runbook": row["runbook"],
        "runbook_version": row["runbook_version"],
        "status": row["status"],
        "priority": row["priority"],
        "source": row["source"],
        "external_id": row["external_id"],
        "robot": row["robot"],
        "created_by": row["created_by"],
        "owner": row["owner"],
        "outputs": row["outputs"],
        "tags": row["tags"],
        "data": row["data"],
        "created_at": iso(row["created_at"]),
        "scheduled_at": iso(row["scheduled_at"]),
        "started_at": iso(row["started_at"]),
        "finished_at": iso(row["finished_at"]),
        "duration_s": row["duration_s"],
        "summary": row["summary"],
        "error": error,
        "warnings": row["warnings"],
        "metrics": metrics,
        "record_counts": counts,
        "approval": row["approval"],
        "parent_id": row["parent_id"],
        "attempt": row["attempt"],
        "preview": bool(row.get("preview")),
        "video": bool(row.get("video")),
    }


def step_view(row: RowMapping | dict[str, Any], screenshot_url: str | None = None) -> dict[str, Any]:
    return {
        "id": row["step_id"],
        "name": row["name"],
        "action": row["action"],
        "status": row["status"],
        "started_at": iso(row["started_at"]),
        "finished_at": iso(row["finished_at"]),
        "duration_s": row["duration_s"],
        "retries": row["retries"],
        "attempt": row["attempt"],
        "captured": row["captured"],
        "error": row["error"],
        "screenshot_url": screenshot_url,
        "diagnostics": _diagnostics(row),
    }


def _diagnostics(row: RowMapping | dict[str, Any]) -> dict[str, Any] | None:
    found = row.get("diagnostics")
    if not found:
        return None
    shot = found.get("screenshot_id")
    return {**found, "screenshot_url": artifact_url(row["job_id"], shot) if shot and row.get("job_id") else None}


def artifact_view(row: RowMapping | dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "kind": row["kind"],
        "name": row["name"],
        "size": row["size"],
        "mime_type": row["mime_type"],
        "step_id": row["step_id"],
        "created_at": iso(row["created_at"]),
        "url": artifact_url(row["job_id"], row["id"]),
    }


def record_view(row: RowMapping) -> dict[str, Any]:
    return {
        "sequence": row["sequence"],
        "record_id": row["record_id"],
        "record_name": row["record_name"],
        "status": row["status"],
        "result": row["result"],
        "error": row["error"],
        "processed_at": iso(row["processed_at"]),
        "screenshot_url": artifact_url(row["job_id"], row["artifact_id"]) if row.get("artifact_id") else None,
    }


RECORD_STATUSES = ("success", "failed", "skipped")
#: Records the job object carries: ORCH_JOB_RECORDS (its default here; callers pass the settings').
JOB_RECORDS = CAPS["job_records"][1]


async def records_page(
    conn: AsyncConnection, job_id: str, statuses: Sequence[str] = (), start: int = 0, limit: int = JOB_RECORDS
) -> dict[str, Any]:
    """One page of a job's records in sequence order (of these statuses, when given), with the total and
    the link to the next page (None on the last)."""
    where = [t.records.c.job_id == job_id]
    if statuses:
        where.append(t.records.c.status.in_(statuses))
    query = select(t.records).where(*where).order_by(t.records.c.sequence).offset(start).limit(limit)
    items = [record_view(r) for r in (await conn.execute(query)).mappings().all()]
    total = (await conn.execute(select(func.count()).select_from(t.records).where(*where))).scalar() or 0
    following = start + len(items)
    link = None
    if items and following < total:
        status = f"status={','.join(statuses)}&" if statuses else ""
        link = f"/api/v1/jobs/{job_id}/records?{status}start={following}&limit={limit}"
    return {"items": items, "total": total, "start": start, "count": len(items), "next": link}


async def job_view(conn: AsyncConnection, job_id: str, records: int = JOB_RECORDS) -> dict[str, Any]:
    """The whole job object (SPEC section 6), with its first `records` records; `records_page` says
    how many there are and links to the rest (GET /api/v1/jobs/{id}/records)."""
    row = (await conn.execute(select(t.jobs).where(t.jobs.c.id == job_id))).mappings().first()
    if row is None:
        raise JobNotFound(f"No job has the id {job_id}.")
    job = job_summary(row)
    job["inputs"] = row["inputs"]
    artifacts = (
        (
            await conn.execute(
                select(t.artifacts).where(t.artifacts.c.job_id == job_id).order_by(t.artifacts.c.created_at)
            )
        )
        .mappings()
        .all()
    )
    shots = {a["step_id"]: artifact_url(job_id, a["id"]) for a in artifacts if a["kind"] == "screenshot"}
    steps = (
        (await conn.execute(select(t.steps).where(t.steps.c.job_id == job_id).order_by(t.steps.c.position)))
        .mappings()
        .all()
    )
    first = await records_page(conn, job_id, limit=records)
    audit = (
        (await conn.execute(select(t.audit).where(t.audit.c.job_id == job_id).order_by(t.audit.c.id))).mappings().all()
    )
    children = await conn.execute(
        select(t.jobs.c.id, t.jobs.c.runbook, t.jobs.c.status)
        .where(t.jobs.c.parent_id == job_id)
        .order_by(t.jobs.c.created_at)
    )
    job["steps"] = [step_view(s, shots.get(s["step_id"])) for s in steps]
    _video_offsets(job)
    job["records"] = first["items"]
    job["records_page"] = {
        "href": f"/api/v1/jobs/{job_id}/records",
        **{k: first[k] for k in ("total", "count", "next")},
    }
    job["children"] = [{"id": c.id, "runbook": c.runbook, "status": c.status} for c in children]
    job["artifacts"] = [artifact_view(a) for a in artifacts]
    job["audit"] = [
        {
            "at": iso(a["at"]),
            "actor": a["actor"],
            "action": a["action"],
            "comment": a["comment"],
            "outcome": a["outcome"],
            "evidence": a["evidence"],
        }
        for a in audit
    ]
    return job


def _video_offsets(job: dict[str, Any]) -> None:
    """Where each step starts in the session video (seconds), for a job that recorded one."""
    began = (job.get("metrics") or {}).get("video_started_at")
    if not began:
        return
    origin = datetime.fromisoformat(began.replace("Z", "+00:00"))
    for step in job["steps"]:
        if step["started_at"]:
            at = datetime.fromisoformat(step["started_at"].replace("Z", "+00:00"))
            step["video_offset_s"] = max(0.0, round((at - origin).total_seconds(), 3))


def runbook_view(version: Any, schedules: list[dict[str, Any]]) -> dict[str, Any]:
    """A runbook's definition as the API and pages show it (secret defaults masked), with its
    schedules: `schedule` is the one its file defines, `schedules` every one of it."""
    runbook = version.runbook
    inputs = {}
    for name, spec in runbook.inputs.items():
        item = spec.model_dump(exclude_none=True)
        if spec.secret and "default" in item:
            item["default"] = "********"
        inputs[name] = item
    return {
        "name": runbook.name,
        "title": runbook.display_title,
        "description": runbook.description,
        "status": runbook.status,
        "version": version.number,
        "hash": version.hash,
        "inputs": inputs,
        "settings": runbook.settings.model_dump(),
        "schedule": next((s for s in schedules if s["origin"] == "runbook"), None),
        "schedules": schedules,
        "steps": [{"id": s.id, "name": s.name, "action": s.action} for s in runbook.steps],
        "steps_count": len(runbook.steps),
        "outputs": list(runbook.outputs),
    }
