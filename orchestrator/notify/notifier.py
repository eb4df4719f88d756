"""The notifier: a loop in every scheduler process that turns job events into messages and sends them.

Where messages come from:
- job events, read in id order after a cursor kept in the database (`cursors`): a job that waits for an
  approval (`approval_requested`, once a request, and only while it is still open when read), failed or
  completed. Whatever process wrote the event (a worker killed right after it, too), the message is
  queued from the stored event. Event ids are made in commit order (orchestrator/events.py), so the
  cursor never passes an event that commits later;
- a sweep every SWEEP_S over the jobs that are not finished: approval reminders (`remind_every`) and
  service levels (`settings.sla`: each limit missed once, recorded in `sla_misses`);
- the scheduler itself, for fire times it missed (`schedule_missed`, orchestrator/scheduler.py).

Every message is a row of the outbox (orchestrator/notify/outbox.py) before it is sent, unique per job,
event, channel and occasion: two schedulers queue it once and send it once, and sending happens apart
from any job, so a slow or failing channel never blocks or fails one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from orchestrator import events, metrics
from orchestrator.channels import Sealer, load
from orchestrator.db import tables as t
from orchestrator.db.engine import reading, writing
from orchestrator.db.tables import utcnow
from orchestrator.errors import OrchestratorError
from orchestrator.notify import outbox
from orchestrator.notify.messages import brief, compose
from orchestrator.notify.rules import channels_for
from orchestrator.notify.send import DEADLINE_S, SendError, post, send_mail
from orchestrator.runbooks.catalog import load_version
from orchestrator.runbooks.schema import Runbook
from orchestrator.schemas.common import iso, parse_time
from orchestrator.services import Services
from orchestrator.states import JobStatus

log = logging.getLogger(__name__)

CURSOR = "notifier"
POLL_S = 0.5
SWEEP_S = 5.0
BATCH = 500
#: Messages sent at once by one notifier.
SENDING = 8
#: A job status event that is news to someone, and the notification event it is.
EVENT_OF_STATUS = {
    JobStatus.WAITING_FOR_APPROVAL.value: "approval_requested",
    JobStatus.FAILED.value: "failed",
    JobStatus.COMPLETED.value: "completed",
    JobStatus.PAUSED.value: "handoff_requested",  # only when a handoff step paused it (not a person)
}
#: The statuses each SLA limit is measured in, and the job's time it runs from.
SLA_CLOCKS = {
    "queued": ({JobStatus.QUEUED.value}, "queued_since"),
    "running": ({JobStatus.RUNNING.value, JobStatus.PAUSED.value, JobStatus.WAITING_FOR_APPROVAL.value}, "started_at"),
    "waiting": ({JobStatus.WAITING_FOR_APPROVAL.value}, "requested_at"),
}
ACTIVE = [JobStatus.QUEUED.value, *SLA_CLOCKS["running"][0]]
JOB_COLUMNS = (
    t.jobs.c.id,
    t.jobs.c.runbook,
    t.jobs.c.runbook_version,
    t.jobs.c.version_id,
    t.jobs.c.status,
    t.jobs.c.approval,
    t.jobs.c.summary,
    t.jobs.c.error_message,
    t.jobs.c.error_step_id,
    t.jobs.c.created_at,
    t.jobs.c.scheduled_at,
    t.jobs.c.started_at,
    t.jobs.c.handoff,
)


def _insert(conn: Any) -> Any:
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


class JobDeleted(SendError):
    """The job a message is about is gone (deleted from the history): it is not sent, ever."""


class Notifier:
    def __init__(self, svc: Services, deadline_s: float = DEADLINE_S) -> None:
        self.svc = svc
        self.settings = svc.settings
        self.sealer = Sealer(svc.settings.secret_key)
        #: How long one send may take (orchestrator/notify/send.py), well within the outbox's lease.
        self.deadline_s = deadline_s
        self._runbooks: OrderedDict[int, Runbook | None] = OrderedDict()
        self._swept = 0.0
        self._stop = asyncio.Event()

    async def run(self) -> None:
        """Until `stop`: queue what happened, sweep now and then, send what is due."""
        while not self._stop.is_set():
            try:
                await self.step()
            except Exception as exc:  # noqa: BLE001 - the database or Redis away: try again shortly
                log.warning("notifier: %s; retrying", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), POLL_S)

    def stop(self) -> None:
        """End `run` after the step under way (a message being sent is finished, not cut off)."""
        self._stop.set()

    async def step(self) -> None:
        while await self.scan() >= BATCH:
            pass
        if time.monotonic() - self._swept >= SWEEP_S:
            self._swept = time.monotonic()
            await self.sweep()
        await self.send_due()

    # -- queueing -------------------------------------------------------------------------------

    async def scan(self) -> int:
        """Queue the messages of the status events after the cursor; returns how many events were read."""
        engine = self.svc.engine
        async with reading(engine) as conn:
            position = (await conn.execute(select(t.cursors.c.position).where(t.cursors.c.name == CURSOR))).scalar()
            if position is None:  # made by the migration; if it is gone, news from now on, not the history
                top = await events.last_id(conn)
            else:
                found = await events.read_after(conn, position, types=("status",), limit=BATCH)
        if position is None:
            async with writing(engine) as conn:
                await conn.execute(
                    _insert(conn)(t.cursors)
                    .values(name=CURSOR, position=top)
                    .on_conflict_do_nothing(index_elements=["name"])
                )
            return 0
        if not found:
            return 0
        news = [e for e in found if e.data.get("status") in EVENT_OF_STATUS]
        jobs = await self._jobs([e.job_id for e in news])
        messages = []
        for event in news:
            job = jobs.get(event.job_id)
            if job is None:
                continue
            name = EVENT_OF_STATUS[event.data["status"]]
            detail: dict[str, Any] = {}
            occasion = ""
            if name == "handoff_requested":
                handoff = job["handoff"]
                if job["status"] != JobStatus.PAUSED.value or not isinstance(handoff, dict) or handoff.get("done_at"):
                    continue  # a person paused it, or the handoff ended before this was read
                detail, occasion = {"message": handoff.get("message")}, str(handoff.get("requested_at") or event.id)
            if name == "approval_requested":
                approval = job["approval"]
                if job["status"] != JobStatus.WAITING_FOR_APPROVAL.value or not isinstance(approval, dict):
                    continue  # decided (or cancelled) before this was read: nobody is to be asked now
                if approval.get("decision"):
                    continue
                # one message a request, however often its waiting is announced
                detail, occasion = {"approval": brief(approval)}, str(approval.get("requested_at") or event.id)
            messages += await self._messages(job, name, occasion, detail)
        async with writing(engine) as conn:
            await outbox.queue(conn, messages)
            await conn.execute(
                update(t.cursors)
                .where(t.cursors.c.name == CURSOR, t.cursors.c.position < found[-1].id)
                .values(position=found[-1].id)
            )
        return len(found)

    async def _messages(self, job: dict[str, Any], event: str, occasion: str, detail: dict[str, Any]) -> list[Any]:
        runbook = await self._runbook(job["version_id"])
        return [
            outbox.Message(job["id"], job["runbook"], event, channel, occasion, detail)
            for channel in channels_for(runbook, self.settings, event)
        ]

    async def _jobs(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        async with reading(self.svc.engine) as conn:
            rows = (await conn.execute(select(*JOB_COLUMNS).where(t.jobs.c.id.in_(set(ids))))).mappings().all()
        return {r["id"]: dict(r) for r in rows}

    async def _runbook(self, version_id: int | None) -> Runbook | None:
        """The runbook a job runs, as it was locked (its `notify` and `settings`); None for a reported run."""
        if version_id is None:
            return None
        if version_id not in self._runbooks:
            try:
                self._runbooks[version_id] = (await load_version(self.svc.engine, version_id)).runbook
            except OrchestratorError:
                self._runbooks[version_id] = None
            while len(self._runbooks) > 256:
                self._runbooks.popitem(last=False)
        return self._runbooks[version_id]

    # -- the sweep: reminders and service levels ----------------------------------------------

    async def sweep(self) -> None:
        now, after = utcnow(), ""
        while True:
            async with reading(self.svc.engine) as conn:
                rows = (
                    (
                        await conn.execute(
                            select(*JOB_COLUMNS)
                            .where(t.jobs.c.status.in_(ACTIVE), t.jobs.c.id > after)
                            .order_by(t.jobs.c.id)
                            .limit(BATCH)
                        )
                    )
                    .mappings()
                    .all()
                )
            for row in rows:
                job = dict(row)
                try:
                    await self._sweep_job(job, now)
                except (ArithmeticError, AttributeError, LookupError, TypeError, ValueError) as exc:
                    # a damaged record (an approval that is no mapping, a reminder period that is no
                    # number): this job is told of no more; the others still are
                    log.warning("notifier: job %s skipped in the sweep: %s: %s", job["id"], type(exc).__name__, exc)
            if len(rows) < BATCH:
                return
            after = rows[-1]["id"]

    async def _sweep_job(self, job: dict[str, Any], now: datetime) -> None:
        runbook = await self._runbook(job["version_id"])
        if runbook is None:
            return
        if reminders := self._reminders(job, runbook, now):
            async with writing(self.svc.engine) as conn:
                await outbox.queue(conn, reminders)
        await self._sla(job, runbook, now)

    def _reminders(self, job: dict[str, Any], runbook: Runbook, now: datetime) -> list[Any]:
        approval = job["approval"] or {}
        every = approval.get("remind_every")
        if job["status"] != JobStatus.WAITING_FOR_APPROVAL.value or not every or approval.get("decision"):
            return []
        try:
            asked = parse_time(approval["requested_at"])
        except (KeyError, ValueError):
            return []
        reminder = int((now - asked).total_seconds() // float(every))
        if reminder < 1:
            return []
        detail = {"approval": brief(approval), "reminder": reminder}
        return [
            outbox.Message(
                job["id"], job["runbook"], "approval_reminder", c, f"{approval['requested_at']}#{reminder}", detail
            )
            for c in channels_for(runbook, self.settings, "approval_reminder")
        ]

    async def _sla(self, job: dict[str, Any], runbook: Runbook, now: datetime) -> None:
        """Each limit of `settings.sla` the job is over now, recorded once with its messages."""
        sla = runbook.settings.sla
        if sla is None:
            return
        approval = job["approval"] if isinstance(job["approval"], dict) else {}
        clocks = {
            "queued_since": job["scheduled_at"] or job["created_at"],
            "started_at": job["started_at"],
            "requested_at": approval.get("requested_at"),
        }
        for limit, seconds in sla.limits().items():
            statuses, clock = SLA_CLOCKS[limit]
            since = clocks[clock]
            if job["status"] not in statuses or since is None:
                continue
            if now - parse_time(since) <= timedelta(seconds=seconds):
                continue
            detail = {"limit": limit, "seconds": seconds}
            messages = [
                outbox.Message(job["id"], job["runbook"], "sla_missed", c, limit, detail)
                for c in channels_for(runbook, self.settings, "sla_missed")
            ]
            await self._missed(job, limit, seconds, now, messages)

    async def _missed(
        self, job: dict[str, Any], limit: str, seconds: float, now: datetime, messages: list[outbox.Message]
    ) -> None:
        """Record that `job` went over `limit` (once), with a `log` event on the job's stream, its
        messages queued in the same transaction (a miss is never recorded without them), and the count
        in the metrics."""
        async with writing(self.svc.engine) as conn:
            new = await conn.execute(
                _insert(conn)(t.sla_misses)
                .values(job_id=job["id"], limit=limit, seconds=seconds, at=now)
                .on_conflict_do_nothing(index_elements=["job_id", "limit"])
            )
            if not new.rowcount:
                return
            message = f"Service level missed: {limit} for more than {seconds:g} s (settings.sla.{limit})."
            await events.append(
                conn, [events.Pending(job["id"], "log", {"job_id": job["id"], "level": "warning", "message": message})]
            )
            await outbox.queue(conn, messages)
        await events.publish(self.svc.redis, [job["id"]])
        await metrics.add_quietly(self.svc.redis, metrics.sla_missed(job["runbook"], limit))
        log.warning("job %s of %s: %s", job["id"], job["runbook"], message)

    # -- sending --------------------------------------------------------------------------------

    async def send_due(self) -> None:
        while rows := await outbox.claim(self.svc.engine, SENDING):
            await asyncio.gather(*(self._send(row) for row in rows))
            if len(rows) < SENDING:
                return

    async def _send(self, row: dict[str, Any]) -> None:
        engine = self.svc.engine
        status: str | None
        try:
            status = await self._deliver(row)
            if not await outbox.done(engine, row, status):
                status = None
        except (OrchestratorError, SendError) as exc:  # no channel by that name, a key changed, the peer
            for_good = isinstance(exc, JobDeleted)
            status = await outbox.failed(engine, row, str(exc), self.settings.notify_retry_s, for_good)
            log.warning(
                "notification %s (%s to %s) not sent, now %s: %s", row["id"], row["event"], row["channel"], status, exc
            )
        except Exception as exc:  # noqa: BLE001 - one broken message must not stop the others
            log.exception("notification %s (%s to %s) failed", row["id"], row["event"], row["channel"])
            status = await outbox.failed(
                engine, row, f"internal error: {type(exc).__name__}", self.settings.notify_retry_s
            )
        if status is None:
            log.info("notification %s: another sender took it over after this one's lease ran out", row["id"])
            return
        await metrics.add_quietly(self.svc.redis, metrics.notification(row["event"], status))

    async def _deliver(self, row: dict[str, Any]) -> str:
        """Send one claimed message; returns `sent` or `logged` (mail without ORCH_SMTP_URL)."""
        channel = await load(self.svc.engine, self.sealer, row["channel"])
        job = None
        if row["job_id"]:
            job = (await self._jobs([row["job_id"]])).get(row["job_id"])
            if job is None:
                raise JobDeleted(f"job {row['job_id']} was deleted before this message went out")
        text = compose(self.settings, row["event"], job, row["detail"] or {})
        if channel.kind == "email":
            evidence = await self._evidence(job, row["detail"] or {})
            sent = await send_mail(self.settings, channel, text, evidence, self.deadline_s)
            return outbox.SENT if sent else outbox.LOGGED
        await post(channel, text, row["id"], iso(utcnow()) or "", self.deadline_s)
        return outbox.SENT

    async def _evidence(self, job: dict[str, Any] | None, detail: dict[str, Any]) -> bytes | None:
        """The approval's evidence screenshot, to attach to its mail (None when there is none)."""
        url = (detail.get("approval") or {}).get("screenshot_url")
        if job is None or not url:
            return None
        artifact_id = url.rsplit("/", 1)[-1]
        async with reading(self.svc.engine) as conn:
            path = (
                await conn.execute(
                    select(t.artifacts.c.path).where(t.artifacts.c.id == artifact_id, t.artifacts.c.job_id == job["id"])
                )
            ).scalar()
        if path is None:
            return None
        try:
            return await self.svc.store.read(path)
        except (OSError, OrchestratorError) as exc:
            log.warning("job %s: the approval's evidence could not be read for its mail (%s)", job["id"], exc)
            return None
