"""The scheduler process: fires due schedules as jobs, exactly one job per fire time however many
schedulers run, and runs the reaper, the reconciler, the purge of expired sessions and the notifier
(orchestrator/notify/notifier.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime, timedelta
from typing import Any

from orchestrator import auth, cron, jobs, queue, schedules
from orchestrator.config import Settings
from orchestrator.db.engine import writing
from orchestrator.db.tables import aware, utcnow
from orchestrator.errors import InvalidTransition, OrchestratorError
from orchestrator.limits import Limits
from orchestrator.notify import outbox
from orchestrator.notify.notifier import Notifier
from orchestrator.notify.rules import channels_for
from orchestrator.reaper import Reaper
from orchestrator.services import Services
from orchestrator.states import Action, JobStatus

log = logging.getLogger(__name__)

RECONCILE_EVERY_S = 15
#: A fire time at most this late is on time; an older one was missed (the scheduler was down) and
#: `catch_up` decides whether it still runs.
GRACE = timedelta(seconds=30)
#: `catch_up: all` after a long downtime starts at most this many jobs per schedule.
MAX_CATCH_UP = 100


def to_fire(row: Any, now: datetime) -> list[datetime]:
    """The fire times of a due schedule to run now, by its catch_up policy."""
    due = cron.between(row.cron, row.timezone, aware(row.next_fire_at), now, limit=100_000)
    if row.catch_up == "all":
        return due[-MAX_CATCH_UP:]
    if row.catch_up == "latest":
        return due[-1:]
    return [f for f in due if now - f <= GRACE]


async def fire(svc: Services, row: Any, now: datetime) -> int:
    """Start the jobs of one due schedule and move it on; returns how many jobs it created."""
    created, last_job, fired = 0, row.last_job_id, None
    chosen = to_fire(row, now)
    await _missed(svc, row, now, chosen)
    for when in chosen:
        fired = when
        if not await _make_room(svc, row, last_job, when):
            continue
        request = jobs.JobRequest(
            inputs=schedules.inputs_of(svc, row),
            priority=row.priority,
            source="schedule",
            actor=f"schedule:{row.id}",
            owner=row.owner,
            idempotency_key=f"schedule:{row.id}:{when.isoformat()}",
            # scheduled_at is the fire time; a fire time is due when it fires, so it is never deferred
            # (a tick given a later `now` than the clock, as in tests, queues at once too)
            run_at=min(when, utcnow()),
            internal=True,
            data={"schedule_id": row.id, "fire_time": when.isoformat()},
        )
        try:
            job, new = await jobs.create(svc, row.runbook, request)
        except OrchestratorError as exc:
            log.error("schedule %s of %s could not create a job: %s", row.id, row.runbook, exc.message)
            continue
        last_job, created = job["id"], created + new
    moved = await schedules.advance(svc, row, cron.next_after(row.cron, row.timezone, now), fired, last_job)
    if not moved and fired is not None and last_job is not None and last_job != row.last_job_id:
        await schedules.remember_job(svc, row.id, fired, last_job)
    return created


async def _missed(svc: Services, row: Any, now: datetime, chosen: list[datetime]) -> None:
    """Fire times the schedule's `catch_up` drops (the scheduler was down then) make one `schedule_missed`
    message per channel the runbook's rules name, queued once however many schedulers see them."""
    due = cron.between(row.cron, row.timezone, aware(row.next_fire_at), now, limit=100_000)
    missed = [when for when in due if when not in chosen]
    if not missed:
        return
    log.warning(
        "schedule %s of %s missed %d fire time(s), %s to %s", row.id, row.runbook, len(missed), missed[0], missed[-1]
    )
    try:
        runbook = (await svc.catalog.get(row.runbook)).runbook
    except OrchestratorError:
        runbook = None
    detail = {
        "runbook": row.runbook,
        "schedule_id": row.id,
        "missed": len(missed),
        "first": missed[0].isoformat(),
        "last": missed[-1].isoformat(),
    }
    messages = [
        outbox.Message(None, row.runbook, "schedule_missed", channel, f"{row.id}@{missed[-1].isoformat()}", detail)
        for channel in channels_for(runbook, svc.settings, "schedule_missed")
    ]
    async with writing(svc.engine) as conn:
        await outbox.queue(conn, messages)


async def _make_room(svc: Services, row: Any, last_job: str | None, when: datetime) -> bool:
    """Apply `overlap` when the schedule's previous job is still going: False to skip this fire time."""
    if row.overlap == "allow" or last_job is None:
        return True
    try:
        previous = await jobs.get(svc, last_job)
    except OrchestratorError:
        return True
    if JobStatus(previous["status"]).finished:
        return True
    if row.overlap == "skip":
        log.info("schedule %s: skipped %s, job %s is still %s", row.id, when.isoformat(), last_job, previous["status"])
        return False
    with contextlib.suppress(InvalidTransition):  # it ended meanwhile, or another scheduler cancelled it
        await jobs.act(svc, last_job, Action.CANCEL, f"schedule:{row.id}", "the schedule's next run started")
    return True


async def tick(svc: Services, now: datetime | None = None) -> int:
    """Fire every due schedule; returns how many jobs were created."""
    now = now or utcnow()
    await schedules.sync(svc)
    created = 0
    for row in await schedules.due(svc, now):
        try:
            created += await fire(svc, row, now)
        except Exception:  # noqa: BLE001 - one broken schedule must not stop the others
            log.exception("schedule %s of %s failed; it goes on at its next fire time", row.id, row.runbook)
            with contextlib.suppress(Exception):
                await schedules.advance(svc, row, cron.next_after(row.cron, row.timezone, now), None, None)
    return created


async def _pause(svc: Services, tick_s: float) -> None:
    """Sleep until the next fire time, at most `tick_s`."""
    nearest = await schedules.earliest(svc)
    wait = tick_s if nearest is None else (aware(nearest) - utcnow()).total_seconds()
    await asyncio.sleep(min(tick_s, max(wait, 0.01)))


async def run(settings: Settings, tick_s: float = 1.0) -> None:
    svc = await Services.open(settings, "orchestrator-scheduler")
    reconciled_at = 0.0
    reaper = Reaper(svc.engine, svc.redis)
    limits = Limits(svc.engine, svc.redis)
    notifier = Notifier(svc)
    notifying = asyncio.create_task(notifier.run(), name="notifier")
    log.info("scheduler started")
    try:
        while True:
            try:
                await tick(svc)
            except Exception as exc:  # noqa: BLE001 - the database away: try again next tick
                log.warning("firing schedules failed (%s); retrying", exc)
            try:
                await reaper.sweep()
                if time.monotonic() - reconciled_at > RECONCILE_EVERY_S:
                    reconciled_at = time.monotonic()
                    if count := await queue.reconcile(svc.engine, svc.redis):
                        log.warning("enqueued %d queued jobs that Redis did not know", count)
                    await limits.hand_out()
                    await auth.purge_sessions(svc.engine)
                await _pause(svc, tick_s)
            except Exception as exc:  # noqa: BLE001 - Redis or the database away: try again next tick
                log.warning("scheduler tick failed (%s); retrying", exc)
                await asyncio.sleep(tick_s)
    finally:
        notifier.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(notifying), 30)
        notifying.cancel()
        await svc.close()
