"""Jobs as users see them: the job object of the API, events and pages."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.config import CAPS
from orchestrator.db import tables as t
from orchestrator.errors import JobNotFound
from orchestrator.notify import outbox
from orchestrator.schemas.common import Response, iso, parse_time
from orchestrator.schemas.jobs import Artifact, AuditEntry, Job, JobSummary, Record, RecordsLink, Step
from orchestrator.schemas.runbooks import Runbook
from orchestrator.states import JobStatus, allowed_actions

__all__ = [
    "artifact_url",
    "artifact_view",
    "iso",
    "job_summary",
    "job_view",
    "record_view",
    "records_page",
    "runbook_view",
    "step_view",
]


def artifact_url(job_id: str, artifact_id: str) -> str:
    return f"/api/v1/jobs/{job_id}/artifacts/{artifact_id}"


def _shown(model: type[Response], values: Any) -> dict[str, Any]:
    return model.model_validate(values).model_dump(mode="json")


def job_summary(row: RowMapping) -> dict[str, Any]:
    """The job's own fields (what lists show), but its inputs: they may be large (records inputs), so
    only the whole job (`job_view`) carries them."""
    return _shown(JobSummary, _summary_fields(row))


def _summary_fields(row: RowMapping) -> dict[str, Any]:
    fields = {k: row[k] for k in JobSummary.model_fields if k in row and row[k] is not None}
    if row["error_message"]:
        fields["error"] = {"message": row["error_message"], "step_id": row["error_step_id"]}
    # a reported run (no runbook version) is another tool's to steer: nobody acts on it here
    run_here = row.get("version_id") is not None
    fields["allowed_actions"] = allowed_actions(JobStatus(row["status"])) if run_here else []
    return fields


def _plain(value: Any) -> Any:
    return iso(value) if isinstance(value, datetime) else value.value if isinstance(value, Enum) else value


def _fields_of(model: type[Response]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The model's fields taken from trusted values (rows this code wrote), in its order with its
    defaults, times as ISO strings: what `model_validate(...).model_dump(mode="json")` gives for such
    values (tests/unit/test_views.py), for a fraction of the work. Every step of every run is shown
    through it (the worker's `step` events)."""
    defaults = {name: field.get_default(call_default_factory=True) for name, field in model.model_fields.items()}
    #: Fields that may hold a datetime or an enum member: only those are converted.
    typed = frozenset(
        name for name, field in model.model_fields.items() if re.search(r"datetime|enum", repr(field.annotation))
    )

    def shown(values: dict[str, Any]) -> dict[str, Any]:
        return {
            name: (_plain(values[name]) if name in typed else values[name]) if name in values else default
            for name, default in defaults.items()
        }

    return shown


_step_fields = _fields_of(Step)


def step_view(row: RowMapping | dict[str, Any], screenshot_url: str | None = None) -> dict[str, Any]:
    return _step_fields(
        {**row, "id": row["step_id"], "screenshot_url": screenshot_url, "diagnostics": _diagnostics(row)}
    )


def _diagnostics(row: RowMapping | dict[str, Any]) -> dict[str, Any] | None:
    found = row.get("diagnostics")
    if not found:
        return None
    shot = found.get("screenshot_id")
    return {**found, "screenshot_url": artifact_url(row["job_id"], shot) if shot and row.get("job_id") else None}


def artifact_view(row: RowMapping | dict[str, Any]) -> dict[str, Any]:
    fields = {k: row[k] for k in Artifact.model_fields if k in row}
    return _shown(Artifact, {**fields, "url": artifact_url(row["job_id"], row["id"])})


def record_view(row: RowMapping) -> dict[str, Any]:
    shot = artifact_url(row["job_id"], row["artifact_id"]) if row.get("artifact_id") else None
    return _shown(Record, {**{k: row[k] for k in Record.model_fields if k in row}, "screenshot_url": shot})


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
    job = _summary_fields(row)
    job["inputs"] = row["inputs"] or {}
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
        **{k: first[k] for k in RecordsLink.model_fields if k in first},
    }
    job["children"] = [dict(c._mapping) for c in children]
    job["artifacts"] = [artifact_view(a) for a in artifacts]
    job["audit"] = [{k: a[k] for k in AuditEntry.model_fields} for a in audit]
    job["notifications"] = await outbox.of_job(conn, job_id)
    misses = await conn.execute(select(t.sla_misses).where(t.sla_misses.c.job_id == job_id).order_by(t.sla_misses.c.at))
    job["sla_missed"] = [{"limit": m.limit, "seconds": m.seconds, "at": iso(m.at)} for m in misses]
    return _shown(Job, job)


def _video_offsets(job: dict[str, Any]) -> None:
    """Where each step starts in the session video (seconds), for a job that recorded one."""
    began = (job.get("metrics") or {}).get("video_started_at")
    if not began:
        return
    origin = parse_time(began)
    for step in job["steps"]:
        if step["started_at"]:
            at = parse_time(step["started_at"])
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
    return _shown(
        Runbook,
        {
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
        },
    )
