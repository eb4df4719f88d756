"""Cron schedules of runbooks -> jobs, one job per fire time however many schedulers run."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from orchestrator import jobs, queue
from orchestrator.config import Settings
from orchestrator.db.tables import utcnow
from orchestrator.errors import OrchestratorError
from orchestrator.reaper import Reaper
from orchestrator.runbooks.schema import Schedule
from orchestrator.services import Services

log = logging.getLogger(__name__)

RECONCILE_EVERY_S = 15


def _zone(schedule: Schedule) -> ZoneInfo:
    try:
        return ZoneInfo(schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise OrchestratorError(f"Unknown timezone {schedule.timezone!r} in the schedule.") from None


def next_fire(schedule: Schedule, after: datetime) -> datetime:
    return croniter(schedule.cron, after.astimezone(_zone(schedule))).get_next(datetime)


def previous_fire(schedule: Schedule, before: datetime) -> datetime:
    return croniter(schedule.cron, before.astimezone(_zone(schedule))).get_prev(datetime)


def describe(schedule: Schedule | None, now: datetime | None = None) -> dict[str, Any] | None:
    if schedule is None:
        return None
    now = now or utcnow()
    return {
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "inputs": schedule.inputs,
        "active": schedule.active,
        "catch_up": schedule.catch_up,
        "overlap": schedule.overlap,
        "previous_trigger": previous_fire(schedule, now).isoformat(),
        "next_trigger": next_fire(schedule, now).isoformat() if schedule.active else None,
    }


async def fire_due(svc: Services, since: datetime, until: datetime) -> int:
    """Create the job of every active schedule that fired in (since, until]. Idempotent per fire time."""
    await svc.catalog.refresh()
    created = 0
    for version in svc.catalog.versions():
        schedule = version.runbook.schedule
        if schedule is None or not schedule.active or version.runbook.status != "active":
            continue
        fire = next_fire(schedule, since)
        if fire > until:
            continue
        request = jobs.JobRequest(
            inputs=dict(schedule.inputs),
            source="schedule",
            actor="scheduler",
            idempotency_key=f"schedule:{fire.astimezone(ZoneInfo('UTC')).isoformat()}",
        )
        try:
            _, new = await jobs.create(svc, version.runbook.name, request)
            created += new
        except OrchestratorError as exc:
            log.error("schedule of %s could not create a job: %s", version.runbook.name, exc.message)
    return created


async def run(settings: Settings, tick: float = 1.0) -> None:
    svc = await Services.open(settings)
    since = utcnow()
    reconciled_at = 0.0
    reaper = Reaper(svc.engine, svc.redis)
    log.info("scheduler started")
    try:
        while True:
            await asyncio.sleep(tick)
            until = utcnow()
            try:
                await fire_due(svc, since, until)
                since = until
                await reaper.sweep()
                if time.monotonic() - reconciled_at > RECONCILE_EVERY_S:
                    reconciled_at = time.monotonic()
                    if count := await queue.reconcile(svc.engine, svc.redis):
                        log.warning("enqueued %d queued jobs that Redis did not know", count)
            except Exception as exc:  # noqa: BLE001 - Redis or the database away: try again next tick
                log.warning("scheduler tick failed (%s); retrying", exc)
    finally:
        await svc.close()
