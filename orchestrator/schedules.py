"""Schedules: cron schedules of runbooks, from runbook files and made over the API, kept in the
database with the scheduler's state (`next_fire_at`). The scheduler process fires them."""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from orchestrator import cron
from orchestrator import inputs as job_inputs
from orchestrator.config import Settings
from orchestrator.db import tables as t
from orchestrator.db.engine import reading, writing
from orchestrator.db.tables import utcnow
from orchestrator.errors import Conflict, InvalidInput, ScheduleNotFound
from orchestrator.runbooks.schema import Runbook, Schedule
from orchestrator.schemas.common import validated
from orchestrator.schemas.schedules import Schedule as ScheduleView
from orchestrator.schemas.schedules import ScheduleCreate, ScheduleUpdate
from orchestrator.services import Services

FILE_PREFIX = "runbook."


def view(row: Any) -> dict[str, Any]:
    shown = ScheduleView.model_validate(
        {
            **row._mapping,
            "previous_trigger": row.last_fire_at,
            "next_trigger": row.next_fire_at if row.active else None,
            "url": f"/api/v1/schedules/{row.id}",
        }
    )
    return shown.model_dump(mode="json", include=set(ScheduleView.model_fields))


# -- checking what callers send ------------------------------------------------------------------


def _check(body: Any, runbook: Runbook, settings: Settings, current: Any = None) -> dict[str, Any]:
    """The fields of a POST body (ScheduleCreate), or of a PATCH (ScheduleUpdate) of schedule `current`;
    each problem named by its field, the runbook's inputs included."""
    errors: dict[str, str] = {}
    if current is not None and isinstance(body, dict) and "runbook" in body:
        errors["runbook"] = "cannot be changed; make a new schedule for another runbook"
        body = {k: v for k, v in body.items() if k != "runbook"}
    values: dict[str, Any] = {}
    try:
        checked = validated(ScheduleCreate if current is None else ScheduleUpdate, body)
        sent = checked.model_dump(include=checked.model_fields_set | ({"timezone"} if current is None else set()))
        # null leaves a field as it is, but for priority, where it means the runbook's own
        values = {k: v for k, v in sent.items() if k != "runbook" and (v is not None or k == "priority")}
    except InvalidInput as exc:
        errors.update(exc.fields)
    given = body.get("inputs", {} if current is None else None) if isinstance(body, dict) else None
    if isinstance(given, dict) and "inputs" not in errors:
        _check_inputs(values, given, runbook, settings, errors)
    if ("cron" in values or "timezone" in values) and not errors:
        _check_cron(
            values.get("cron", current and current.cron), values.get("timezone", current and current.timezone), errors
        )
    if errors:
        raise InvalidInput(errors)
    return values


def _check_inputs(
    values: dict[str, Any], given: dict[str, Any], runbook: Runbook, settings: Settings, errors: dict[str, str]
) -> None:
    try:
        clean = job_inputs.validate(
            runbook.inputs, given, max_records=settings.max_records, max_records_bytes=settings.max_records_bytes
        )
    except InvalidInput as exc:
        errors.update({f"inputs.{k}": v for k, v in exc.fields.items()})
        return
    values["inputs"] = {k: clean[k] for k in given}


def _check_cron(expression: Any, timezone: Any, errors: dict[str, str]) -> None:
    try:
        cron.check(expression, timezone)
    except cron.CronError as exc:
        errors["timezone" if "time zone" in str(exc) else "cron"] = str(exc)


def _stored_inputs(svc: Services, runbook: Runbook | None, given: dict[str, Any]) -> dict[str, Any]:
    specs = runbook.inputs if runbook else {}
    public, secret = job_inputs.split_secrets(specs, given)
    return {"inputs": public, "secret_inputs": svc.box.seal(secret)}


def inputs_of(svc: Services, row: Any) -> dict[str, Any]:
    """The schedule's inputs with its secrets, for the jobs it creates."""
    return {**row.inputs, **svc.box.open(row.secret_inputs)}


# -- the API's operations ------------------------------------------------------------------------


async def create(svc: Services, body: Any, actor: str, owner: str | None = None) -> dict[str, Any]:
    """A schedule made over the API; `owner` (the human who made it) owns the jobs it starts."""
    name = body.get("runbook") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name:
        raise InvalidInput({"runbook": "is required: the name of the runbook to run"})
    runbook = (await svc.catalog.get(name)).runbook  # 404 for an unknown runbook, before the fields
    values = _check(body, runbook, svc.settings)
    now = utcnow()
    row = {
        "id": secrets.token_hex(8),
        "runbook": name,
        "origin": "api",
        "priority": None,
        "catch_up": "none",
        "overlap": "skip",
        "active": True,
        **values,
        **_stored_inputs(svc, runbook, values.get("inputs", {})),
        "created_by": actor,
        "owner": owner,
        "created_at": now,
        "updated_at": now,
    }
    row["next_fire_at"] = cron.next_after(row["cron"], row["timezone"], now) if row["active"] else None
    async with writing(svc.engine) as conn:
        await conn.execute(insert(t.schedules).values(**row))
    return await get(svc, row["id"])


async def get(svc: Services, schedule_id: str) -> dict[str, Any]:
    return view(await _row(svc, schedule_id))


async def _row(svc: Services, schedule_id: str) -> Any:
    async with reading(svc.engine) as conn:
        row = (await conn.execute(select(t.schedules).where(t.schedules.c.id == schedule_id))).first()
    if row is None:
        raise ScheduleNotFound(f"No schedule has the id {schedule_id!r}.")
    return row


async def listed(svc: Services, runbook: str | None = None) -> list[dict[str, Any]]:
    await sync(svc)
    query = select(t.schedules).order_by(t.schedules.c.runbook, t.schedules.c.created_at)
    if runbook:
        query = query.where(t.schedules.c.runbook == runbook)
    async with reading(svc.engine) as conn:
        return [view(r) for r in await conn.execute(query)]


async def by_runbook(svc: Services) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for item in await listed(svc):
        grouped.setdefault(item["runbook"], []).append(item)
    return grouped


async def update_one(svc: Services, schedule_id: str, body: Any, owner: str | None = None) -> dict[str, Any]:
    """Change a schedule. Whoever changes more than `active` (its inputs, its times) owns the jobs it
    starts from then on: they may no longer approve them where self-approval is off."""
    row = await _row(svc, schedule_id)
    if row.origin == "runbook" and isinstance(body, dict) and set(body) - {"active"}:
        raise Conflict(
            f"Schedule {schedule_id} comes from the file of runbook {row.runbook}: change it there;"
            " only active (pause and resume) can be set here."
        )
    runbook = (await svc.catalog.get(row.runbook)).runbook
    values = _check(body, runbook, svc.settings, current=row)
    merged = {"cron": row.cron, "timezone": row.timezone, "active": row.active, **values}
    if "inputs" in values:
        values.update(_stored_inputs(svc, runbook, values.pop("inputs")))
    now = utcnow()
    if set(values) - {"active"} and owner is not None:
        values["owner"] = owner
    timing_changed = {"cron", "timezone"} & set(values) or (merged["active"] and not row.active)
    if timing_changed:
        values["next_fire_at"] = cron.next_after(merged["cron"], merged["timezone"], now)
    async with writing(svc.engine) as conn:
        await conn.execute(update(t.schedules).where(t.schedules.c.id == schedule_id).values(**values, updated_at=now))
    return await get(svc, schedule_id)


async def remove(svc: Services, schedule_id: str) -> None:
    row = await _row(svc, schedule_id)
    if row.origin == "runbook":
        raise Conflict(
            f"Schedule {schedule_id} comes from the file of runbook {row.runbook}: remove it there, or pause it."
        )
    async with writing(svc.engine) as conn:
        await conn.execute(delete(t.schedules).where(t.schedules.c.id == schedule_id))


# -- schedules written in runbook files ----------------------------------------------------------


def _definition(schedule: Schedule) -> str:
    return hashlib.sha256(json.dumps(schedule.model_dump(), sort_keys=True, default=str).encode()).hexdigest()


async def sync(svc: Services) -> None:
    """Make the rows of file schedules match the runbook files: new ones start, changed ones start
    over from the file (a pause made on the page lasts until the file changes), removed ones go."""
    await svc.catalog.refresh()
    wanted = {
        FILE_PREFIX + v.runbook.name: v.runbook
        for v in svc.catalog.versions()
        if v.runbook.schedule is not None and v.runbook.status == "active"
    }
    async with reading(svc.engine) as conn:
        rows = {
            r.id: r.definition
            for r in await conn.execute(
                select(t.schedules.c.id, t.schedules.c.definition).where(t.schedules.c.origin == "runbook")
            )
        }
    for schedule_id, runbook in wanted.items():
        assert runbook.schedule is not None
        definition = _definition(runbook.schedule)
        if rows.get(schedule_id) != definition:
            await _write_file_schedule(svc, schedule_id, runbook, definition, exists=schedule_id in rows)
    gone = set(rows) - set(wanted)
    if gone:
        async with writing(svc.engine) as conn:
            await conn.execute(delete(t.schedules).where(t.schedules.c.id.in_(gone)))


async def _write_file_schedule(
    svc: Services, schedule_id: str, runbook: Runbook, definition: str, exists: bool
) -> None:
    schedule = runbook.schedule
    assert schedule is not None
    now = utcnow()
    values = {
        "runbook": runbook.name,
        "origin": "runbook",
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        **_stored_inputs(svc, runbook, dict(schedule.inputs)),
        "priority": None,
        "catch_up": schedule.catch_up,
        "overlap": schedule.overlap,
        "active": schedule.active,
        "definition": definition,
        "next_fire_at": cron.next_after(schedule.cron, schedule.timezone, now) if schedule.active else None,
        "updated_at": now,
    }
    if exists:
        async with writing(svc.engine) as conn:
            await conn.execute(update(t.schedules).where(t.schedules.c.id == schedule_id).values(**values))
        return
    with contextlib.suppress(IntegrityError):  # another scheduler made it a moment ago
        async with writing(svc.engine) as conn:
            await conn.execute(
                insert(t.schedules).values(id=schedule_id, created_by="runbook file", created_at=now, **values)
            )


# -- the scheduler's state -----------------------------------------------------------------------


async def due(svc: Services, now: datetime) -> list[Any]:
    query = select(t.schedules).where(t.schedules.c.active.is_(True), t.schedules.c.next_fire_at <= now)
    async with reading(svc.engine) as conn:
        return list(await conn.execute(query.order_by(t.schedules.c.next_fire_at)))


async def earliest(svc: Services) -> datetime | None:
    query = select(t.schedules.c.next_fire_at).where(t.schedules.c.active.is_(True))
    async with reading(svc.engine) as conn:
        return (await conn.execute(query.order_by(t.schedules.c.next_fire_at).limit(1))).scalar()


async def advance(svc: Services, row: Any, next_fire: datetime, fired: datetime | None, job_id: str | None) -> bool:
    """Move the schedule on from `row.next_fire_at`: of several schedulers only one succeeds."""
    values: dict[str, Any] = {"next_fire_at": next_fire, "updated_at": utcnow()}
    if fired is not None:
        values["last_fire_at"] = fired
    if job_id is not None:
        values["last_job_id"] = job_id
    async with writing(svc.engine) as conn:
        moved = await conn.execute(
            update(t.schedules)
            .where(t.schedules.c.id == row.id, t.schedules.c.next_fire_at == row.next_fire_at)
            .values(**values)
        )
    return moved.rowcount == 1


async def remember_job(svc: Services, schedule_id: str, fired: datetime, job_id: str) -> None:
    """Record the job of fire time `fired` as the schedule's last one, made by a scheduler that lost
    the race to move the schedule on (the winner may have skipped that fire time, while the last
    job still ran), unless the schedule has fired a later time since."""
    async with writing(svc.engine) as conn:
        await conn.execute(
            update(t.schedules)
            .where(
                t.schedules.c.id == schedule_id,
                or_(t.schedules.c.last_fire_at.is_(None), t.schedules.c.last_fire_at <= fired),
            )
            .values(last_job_id=job_id, last_fire_at=fired, updated_at=utcnow())
        )
