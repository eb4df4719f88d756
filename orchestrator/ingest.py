"""Runs made elsewhere (another RPA tool, a script) reported into the same job history.

An ingested job has no runbook version; its `source` names the reporting tool, and `source` +
`external_id` identify it, so reporting the same run again updates it instead of adding one.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from orchestrator.db import tables as t
from orchestrator.db.engine import reading, writing
from orchestrator.db.tables import aware, utcnow
from orchestrator.errors import InvalidInput, JobNotFound, OrchestratorError
from orchestrator.events import Pending, append, publish, status_event
from orchestrator.jobs import count_job, get, new_id
from orchestrator.schemas.common import validated
from orchestrator.schemas.ingest import IngestJob, IngestPatch, IngestRecord
from orchestrator.schemas.jobs import RecordCounts
from orchestrator.services import Services
from orchestrator.states import JobStatus
from orchestrator.transitions import MIRROR, make

#: Fields that identify a reported run: set by its first report, never changed.
IDENTITY = ("process", "source", "external_id")
#: The job columns of report fields whose names differ.
COLUMNS = {"process": "runbook", "error": "error_message"}


def parse(body: Any, *, partial: bool) -> dict[str, Any]:
    """The job columns a report sets (IngestJob, or IngestPatch when `partial`); every problem is
    named by its field."""
    if partial and isinstance(body, dict) and (fixed := [k for k in IDENTITY if k in body]):
        raise InvalidInput({k: "cannot be changed; it identifies the run" for k in fixed})
    report = validated(IngestPatch if partial else IngestJob, body)
    given = report.model_dump(include=report.model_fields_set - {"records"}, exclude_none=True)
    values = {COLUMNS.get(k, k): v for k, v in given.items()}
    if "status" in values:
        values["status"] = report.status.value if report.status else None
    if "runbook" in values:
        # reported runs live in a name space of their own: a process can never pass for a runbook here
        values["runbook"] = process_name(values["source"], values["runbook"])
    if values.get("started_at") and values.get("finished_at"):
        values["duration_s"] = round((values["finished_at"] - values["started_at"]).total_seconds(), 3)
        if values["duration_s"] < 0:
            raise InvalidInput({"finished_at": "must not be before started_at"})
    if "records" in report.model_fields_set:
        values["_records"] = _records(report.records)
    return values


def process_name(source: str, process: str) -> str:
    """The job's `runbook` for a reported run: `SOURCE/PROCESS`. A runbook's name never holds a `/`."""
    return f"{source}/{process}"


def _records(records: list[IngestRecord]) -> list[dict[str, Any]]:
    """The record rows (their sequences differ: IngestPatch refuses a repeat)."""
    rows: dict[int, dict[str, Any]] = {}
    for index, item in enumerate(records):
        sequence = index + 1 if item.sequence is None else item.sequence
        rows[sequence] = {
            "sequence": sequence,
            "record_id": str(item.record_id)[:500],
            "record_name": item.record_name[:500] if item.record_name else None,
            "status": item.status.value,
            "result": item.result,
            "error": item.error,
            "processed_at": item.processed_at,
        }
    return list(rows.values())


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
        # locked: a report of the same run at the same moment waits, then mirrors from what this one wrote
        row = (await conn.execute(select(t.jobs).where(t.jobs.c.id == job_id).with_for_update())).mappings().first()
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
                    select(t.jobs)
                    .where(t.jobs.c.source == values["source"], t.jobs.c.external_id == values["external_id"])
                    .with_for_update()  # as in patch: concurrent reports of one run mirror one after the other
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
        events = [status_event(job_id, values["status"], None, now)]
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
    moves = bool(values.get("status")) and values["status"] != row["status"]
    events: list[Pending] = []
    if moves:  # the mirror move (and its event), the report's other columns in the same UPDATE
        to, columns = JobStatus(values["status"]), {k: v for k, v in values.items() if k != "status"}
        await make(conn, MIRROR, job_id, to, expected={JobStatus(row["status"])}, values=columns, events=events)
    elif values:
        await conn.execute(update(t.jobs).where(t.jobs.c.id == job_id).values(**values, updated_at=utcnow()))
    counts = await _put_records(conn, job_id, records) if records is not None else row["record_counts"]
    if moves and JobStatus(values["status"]).finished:
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


def _report(job_id: str, values: dict[str, Any], counts: dict[str, int] | None) -> Pending:
    return Pending(
        job_id,
        "report",
        {
            "job_id": job_id,
            "status": values["status"],
            "metrics": values.get("metrics") or {},
            "record_counts": counts or RecordCounts().model_dump(),
            "duration_s": values.get("duration_s"),
            "summary": values.get("summary"),
        },
    )


async def attach(svc: Services, job_id: str, files: list[tuple[str, bytes, str | None]]) -> list[dict[str, Any]]:
    """Store files reported with a run (attachments), under server-made names; return their rows."""
    if not files:
        raise InvalidInput({"file": "send at least one file as multipart/form-data"})
    async with reading(svc.engine) as conn:
        await _ingested(conn, job_id)
    # stored before the transaction (an upload to a remote store would hold the writer), removed if it fails
    rows = [await svc.store.save(job_id, "attachment", name, content, mime_type=mime) for name, content, mime in files]
    try:
        async with writing(svc.engine) as conn:
            await _ingested(conn, job_id)  # it may have been deleted meanwhile
            await conn.execute(insert(t.artifacts), rows)
    except BaseException:
        await svc.store.delete([row["path"] for row in rows])
        raise
    await publish(svc.redis, [job_id])
    return rows


async def _ingested(conn: Any, job_id: str) -> None:
    found = (await conn.execute(select(t.jobs.c.version_id).where(t.jobs.c.id == job_id))).first()
    if found is None or found.version_id is not None:
        raise JobNotFound(f"No ingested job has the id {job_id}.")
