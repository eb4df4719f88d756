"""Runs made elsewhere (another RPA tool, a script) reported into the same job history.

An ingested job has no runbook version; its `source` names the reporting tool, and `source` +
`external_id` identify it, so reporting the same run again updates it instead of adding one.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from orchestrator.db import tables as t
from orchestrator.db.engine import writing
from orchestrator.db.tables import aware, utcnow
from orchestrator.errors import InvalidInput, JobNotFound, OrchestratorError
from orchestrator.events import Pending, append, publish
from orchestrator.jobs import count_job, get, new_id
from orchestrator.services import Services
from orchestrator.states import JobStatus

#: What other tools call their statuses, mapped to ours.
STATUSES: dict[str, JobStatus] = {
    **{s.value: s for s in JobStatus},
    "pending": JobStatus.QUEUED,
    "new": JobStatus.QUEUED,
    "in_progress": JobStatus.RUNNING,
    "started": JobStatus.RUNNING,
    "successful": JobStatus.COMPLETED,
    "success": JobStatus.COMPLETED,
    "succeeded": JobStatus.COMPLETED,
    "done": JobStatus.COMPLETED,
    "faulted": JobStatus.FAILED,
    "error": JobStatus.FAILED,
    "stopped": JobStatus.CANCELLED,
    "canceled": JobStatus.CANCELLED,
    "aborted": JobStatus.CANCELLED,
    "suspended": JobStatus.WAITING_FOR_APPROVAL,
}
RECORD_STATUSES = {
    "success": "success",
    "successful": "success",
    "succeeded": "success",
    "completed": "success",
    "failed": "failed",
    "faulted": "failed",
    "error": "failed",
    "skipped": "skipped",
}
FIELDS = {
    "process",
    "source",
    "external_id",
    "robot",
    "status",
    "started_at",
    "finished_at",
    "summary",
    "error",
    "tags",
    "data",
    "records",
}
MAX_RECORDS = 10_000


def parse(body: Any, *, partial: bool) -> dict[str, Any]:
    """The job columns a report sets, each checked; every problem is named by its field."""
    if not isinstance(body, dict):
        raise InvalidInput({"body": "must be a JSON object"})
    errors: dict[str, str] = {k: "is not a known field" for k in body if k not in FIELDS}
    for name in () if partial else ("process", "source", "external_id", "status"):
        if body.get(name) in (None, ""):
            errors[name] = "is required"
    for name in ("process", "source", "external_id") if partial else ():
        if name in body:
            errors[name] = "cannot be changed; it identifies the run"
    values = {**_strings(body, errors), **_status_and_times(body, errors), **_tags_and_data(body, errors)}
    if "runbook" in values and "source" in values:
        # reported runs live in a name space of their own: a process can never pass for a runbook here
        values["runbook"] = process_name(values["source"], values["runbook"])
    records = _records(body["records"], errors) if "records" in body else None
    if errors:
        raise InvalidInput(errors)
    if values.get("started_at") and values.get("finished_at"):
        values["duration_s"] = round((values["finished_at"] - values["started_at"]).total_seconds(), 3)
        if values["duration_s"] < 0:
            raise InvalidInput({"finished_at": "must not be before started_at"})
    if records is not None:
        values["_records"] = records
    return values


def process_name(source: str, process: str) -> str:
    """The job's `runbook` for a reported run: `SOURCE/PROCESS`. A runbook's name never holds a `/`."""
    return f"{source}/{process}"


STRINGS = (
    ("process", "runbook", 100),
    ("source", "source", 32),
    ("external_id", "external_id", 200),
    ("robot", "robot", 200),
    ("summary", "summary", 2000),
    ("error", "error_message", 10_000),
)


def _strings(body: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, column, size in STRINGS:
        if body.get(name) is None or name in errors:
            continue
        if not isinstance(body[name], str) or len(body[name]) > size:
            errors[name] = f"must be a string of at most {size} characters"
        else:
            values[column] = body[name]
    return values


def _status_and_times(body: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if "status" in body and "status" not in errors:
        status = STATUSES.get(body["status"].lower()) if isinstance(body["status"], str) else None
        if status is None:
            errors["status"] = f"must be one of {', '.join(sorted(STATUSES))}"
        else:
            values["status"] = status.value
    for name in ("started_at", "finished_at"):
        if body.get(name) is not None:
            values[name] = _when(body[name], name, errors)
    return values


def _tags_and_data(body: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if "tags" in body:
        tags = body["tags"]
        if not isinstance(tags, list) or not all(isinstance(x, str) and len(x) <= 100 for x in tags):
            errors["tags"] = "must be a list of strings of at most 100 characters"
        else:
            values["tags"] = tags
    if "data" in body:
        if not isinstance(body["data"], dict) or len(json.dumps(body["data"])) > 100_000:
            errors["data"] = "must be an object of at most 100000 characters as JSON"
        else:
            values["data"] = body["data"]
    return values


def _when(raw: Any, name: str, errors: dict[str, str]) -> datetime | None:
    try:
        value = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        errors[name] = "must be an ISO 8601 date and time, such as 2026-01-01T08:00:00Z"
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _records(raw: Any, errors: dict[str, str]) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or len(raw) > MAX_RECORDS:
        errors["records"] = f"must be a list of at most {MAX_RECORDS} objects"
        return []
    records: list[dict[str, Any]] = []
    seen: set[int] = set()
    for index, item in enumerate(raw):
        where = f"records[{index}]"
        if not isinstance(item, dict):
            errors[where] = "must be an object"
            continue
        unknown = set(item) - {"sequence", "record_id", "record_name", "status", "result", "error", "processed_at"}
        if unknown:
            errors[f"{where}.{sorted(unknown)[0]}"] = "is not a known field"
        sequence = item.get("sequence", index + 1)
        if not isinstance(sequence, int) or isinstance(sequence, bool) or not 0 <= sequence < 2**31 or sequence in seen:
            errors[f"{where}.sequence"] = "must be a whole number from 0 to 2147483647, different for each record"
            continue
        seen.add(sequence)
        record_id = item.get("record_id")
        if not isinstance(record_id, str | int) or isinstance(record_id, bool) or not str(record_id):
            errors[f"{where}.record_id"] = "is required: a string or a number"
            continue
        status = RECORD_STATUSES.get(str(item.get("status", "")).lower())
        if status is None:
            errors[f"{where}.status"] = f"must be one of {', '.join(sorted(RECORD_STATUSES))}"
            continue
        name, error = item.get("record_name"), item.get("error")
        if (name is not None and not isinstance(name, str)) or (error is not None and not isinstance(error, str)):
            errors[where] = "record_name and error must be strings"
            continue
        processed = _when(item["processed_at"], f"{where}.processed_at", errors) if item.get("processed_at") else None
        records.append(
            {
                "sequence": sequence,
                "record_id": str(record_id)[:500],
                "record_name": name[:500] if name else None,
                "status": status,
                "result": item.get("result"),
                "error": error,
                "processed_at": processed,
            }
        )
    return records


async def report(svc: Services, body: Any, actor: str, owner: str | None = None) -> tuple[dict[str, Any], bool]:
    """Create the job of a run reported from elsewhere, or update it when its source and external id
    are known; return the job and whether it was created. Reports count against the caller's job rate."""
    values = parse(body, partial=False)
    await count_job(svc, owner, actor, "ingest")
    for _ in range(2):  # a concurrent first report of the same run wins the insert; this one then updates
        try:
            job_id, created = await _store(svc, values, actor)
            break
        except IntegrityError:
            continue
    else:
        raise OrchestratorError("The run could not be stored; try again.")
    await publish(svc.redis, [job_id])
    return await get(svc, job_id), created


async def patch(svc: Services, job_id: str, body: Any, actor: str) -> dict[str, Any]:
    values = parse(body, partial=True)
    async with writing(svc.engine) as conn:
        row = (await conn.execute(select(t.jobs).where(t.jobs.c.id == job_id))).mappings().first()
        if row is None or row["version_id"] is not None:
            raise JobNotFound(f"No ingested job has the id {job_id}.")
        await _update(conn, dict(row), values)
    await publish(svc.redis, [job_id])
    return await get(svc, job_id)


async def _store(svc: Services, values: dict[str, Any], actor: str) -> tuple[str, bool]:
    async with writing(svc.engine) as conn:
        row = (
            (
                await conn.execute(
                    select(t.jobs).where(
                        t.jobs.c.source == values["source"], t.jobs.c.external_id == values["external_id"]
                    )
                )
            )
            .mappings()
            .first()
        )
        if row is not None:
            await _update(conn, dict(row), values)
            return row["id"], False
        job_id, now = new_id(), utcnow()
        records = values.pop("_records", None)
        await conn.execute(
            insert(t.jobs).values(
                id=job_id,
                created_by=actor,
                created_at=values.get("started_at") or now,
                updated_at=now,
                **values,
            )
        )
        events = [_status_event(job_id, values["status"], None)]
        counts = await _put_records(conn, job_id, records) if records is not None else None
        if JobStatus(values["status"]).finished:
            events.append(_report(job_id, values, counts))
        await append(conn, events)
    return job_id, True


async def _update(conn: Any, row: dict[str, Any], values: dict[str, Any]) -> None:
    job_id = row["id"]
    records = values.pop("_records", None)
    merged = {**row, **values}
    if merged.get("started_at") and merged.get("finished_at") and "duration_s" not in values:
        began, ended = aware(merged["started_at"]), aware(merged["finished_at"])
        values["duration_s"] = round((ended - began).total_seconds(), 3)
    if values:
        await conn.execute(update(t.jobs).where(t.jobs.c.id == job_id).values(**values, updated_at=utcnow()))
    counts = await _put_records(conn, job_id, records) if records is not None else row["record_counts"]
    events = []
    if values.get("status") and values["status"] != row["status"]:
        events.append(_status_event(job_id, values["status"], row["status"]))
        if JobStatus(values["status"]).finished:
            events.append(_report(job_id, {**merged, **values}, counts))
    await append(conn, events)


async def _put_records(conn: Any, job_id: str, records: list[dict[str, Any]]) -> dict[str, int]:
    """Records replace those of the same sequence; the counts follow from all of them."""
    sequences = [r["sequence"] for r in records]
    for chunk in range(0, len(sequences), 500):
        part = sequences[chunk : chunk + 500]
        await conn.execute(delete(t.records).where(t.records.c.job_id == job_id, t.records.c.sequence.in_(part)))
    if records:
        await conn.execute(insert(t.records), [{**r, "job_id": job_id} for r in records])
    statuses = (await conn.execute(select(t.records.c.status).where(t.records.c.job_id == job_id))).scalars().all()
    counts = {
        "total": len(statuses),
        "succeeded": statuses.count("success"),
        "failed": statuses.count("failed"),
        "skipped": statuses.count("skipped"),
    }
    await conn.execute(update(t.jobs).where(t.jobs.c.id == job_id).values(record_counts=counts))
    return counts


def _status_event(job_id: str, status: str, previous: str | None) -> Pending:
    data = {"job_id": job_id, "status": status, "previous": previous, "at": utcnow().isoformat()}
    return Pending(job_id, "status", data)


def _report(job_id: str, values: dict[str, Any], counts: dict[str, int] | None) -> Pending:
    return Pending(
        job_id,
        "report",
        {
            "job_id": job_id,
            "status": values["status"],
            "metrics": values.get("metrics") or {},
            "record_counts": counts or {"total": 0, "succeeded": 0, "failed": 0, "skipped": 0},
            "duration_s": values.get("duration_s"),
            "summary": values.get("summary"),
        },
    )


async def attach(svc: Services, job_id: str, files: list[tuple[str, bytes, str | None]]) -> list[dict[str, Any]]:
    """Store files reported with a run (attachments), under server-made names; return their rows."""
    if not files:
        raise InvalidInput({"file": "send at least one file as multipart/form-data"})
    async with writing(svc.engine) as conn:
        found = (await conn.execute(select(t.jobs.c.version_id).where(t.jobs.c.id == job_id))).first()
        if found is None or found.version_id is not None:
            raise JobNotFound(f"No ingested job has the id {job_id}.")
        rows = [
            svc.store.save(job_id, "attachment", name, content, mime_type=mime).row for name, content, mime in files
        ]
        await conn.execute(insert(t.artifacts), rows)
    await publish(svc.redis, [job_id])
    return rows
