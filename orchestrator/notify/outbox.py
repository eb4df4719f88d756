"""The outbox: one row per message (job or schedule, event, channel, occasion), written before anything
is sent, so a restart loses none and two schedulers send each once.

A row is `pending` until a sender claims it (`sending`, with a lease, by compare-and-set: one sender
wins); then `sent` (or `logged`: mail with no ORCH_SMTP_URL), or `pending` again with a later `next_at`
after a failure, doubling the wait each time (at most an hour) until GIVE_UP after it was queued, when
it is `failed` for good. A sender that died mid-send leaves `sending` with an expired lease: the row is
due again. Each claim counts an attempt, and a sender reports only on its own attempt (`done`, `failed`
compare the attempt too): a sender that outlived its lease cannot undo the report of the one that took
the message over, so a message goes out at most once more after a sender is lost."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from orchestrator.db import tables as t
from orchestrator.db.engine import reading, writing
from orchestrator.db.tables import utcnow
from orchestrator.schemas.common import iso

GIVE_UP = timedelta(hours=24)
LONGEST_WAIT = timedelta(hours=1)
#: How long a claimed message may take before another sender may try it.
LEASE = timedelta(minutes=2)
PENDING, SENDING, SENT, LOGGED, FAILED = "pending", "sending", "sent", "logged", "failed"


@dataclass(frozen=True)
class Message:
    """A message to queue: `occasion` tells apart messages of one job, event and channel (a second
    approval request, the third reminder, an SLA limit); `detail` is what it will say beyond the job."""

    job_id: str | None
    runbook: str
    event: str
    channel: str
    occasion: str = ""
    detail: dict[str, Any] | None = None

    @property
    def dedupe(self) -> str:
        return f"{self.job_id or '-'}|{self.event}|{self.channel}|{self.occasion}"[:400]


async def queue(conn: AsyncConnection, messages: list[Message]) -> int:
    """Insert these messages, each once however often it is queued; returns how many are new."""
    if not messages:
        return 0
    now = utcnow()
    unique: dict[str, Message] = {}
    for message in messages:  # each once (the first), so that one statement never meets itself
        unique.setdefault(message.dedupe, message)
    rows = [
        {
            "dedupe": m.dedupe,
            "job_id": m.job_id,
            "runbook": m.runbook,
            "event": m.event,
            "channel": m.channel,
            "detail": m.detail or {},
            "status": PENDING,
            "attempts": 0,
            "next_at": now,
            "created_at": now,
        }
        for m in unique.values()
    ]
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = insert(t.notifications).on_conflict_do_nothing(index_elements=["dedupe"])
    # the ids of the rows made (a many-row rowcount is no count on asyncpg)
    return len((await conn.execute(statement.returning(t.notifications.c.id), rows)).all())


def _due(now: datetime) -> Any:
    n = t.notifications.c
    return or_(
        and_(n.status == PENDING, n.next_at <= now),
        and_(n.status == SENDING, n.lease_until < now),
    )


async def claim(engine: AsyncEngine, limit: int = 20) -> list[dict[str, Any]]:
    """Messages due now, each claimed by this sender alone (a compare-and-set per row)."""
    now = utcnow()
    n = t.notifications.c
    async with reading(engine) as conn:
        rows = (
            (await conn.execute(select(t.notifications).where(_due(now)).order_by(n.id).limit(limit))).mappings().all()
        )
    claimed = []
    for row in rows:
        async with writing(engine) as conn:
            won = await conn.execute(
                update(t.notifications)
                .where(n.id == row["id"], _due(now))
                .values(status=SENDING, lease_until=now + LEASE, attempts=n.attempts + 1)
            )
        if won.rowcount == 1:
            claimed.append({**row, "attempts": row["attempts"] + 1})
    return claimed


def _mine(row: dict[str, Any]) -> Any:
    """The claimed row, still claimed by this attempt (not taken over after its lease ran out)."""
    n = t.notifications.c
    return and_(n.id == row["id"], n.status == SENDING, n.attempts == row["attempts"])


async def done(engine: AsyncEngine, row: dict[str, Any], status: str) -> bool:
    """A claimed message went out (`sent`, or `logged`); the last error of an earlier try stays shown.
    False when another sender had taken it over (this one's lease ran out): that one reports."""
    async with writing(engine) as conn:
        result = await conn.execute(
            update(t.notifications).where(_mine(row)).values(status=status, sent_at=utcnow(), lease_until=None)
        )
    return result.rowcount == 1


async def failed(
    engine: AsyncEngine, row: dict[str, Any], error: str, retry_s: float, for_good: bool = False
) -> str | None:
    """A claimed message could not go out: due again after a wait that doubles with each attempt, or
    `failed` for good once GIVE_UP has passed since it was queued (or at once, `for_good`). Returns the
    status it is left in; None when another sender had taken it over (that one reports)."""
    now = utcnow()
    wait = min(timedelta(seconds=retry_s * 2 ** (row["attempts"] - 1)), LONGEST_WAIT)
    created = row["created_at"] if row["created_at"].tzinfo else row["created_at"].replace(tzinfo=now.tzinfo)
    status = FAILED if for_good or now + wait - created > GIVE_UP else PENDING
    async with writing(engine) as conn:
        result = await conn.execute(
            update(t.notifications)
            .where(_mine(row))
            .values(status=status, next_at=now + wait, lease_until=None, last_error=error[:500])
        )
    return status if result.rowcount == 1 else None


async def of_job(conn: AsyncConnection, job_id: str) -> list[dict[str, Any]]:
    """A job's messages as the job object shows them (SPEC: `notifications`)."""
    n = t.notifications.c
    rows = (await conn.execute(select(t.notifications).where(n.job_id == job_id).order_by(n.id))).mappings().all()
    return [
        {
            "channel": r["channel"],
            "event": r["event"],
            "status": r["status"],
            "attempts": r["attempts"],
            "last_error": r["last_error"],
            "created_at": iso(r["created_at"]),
            "sent_at": iso(r["sent_at"]),
        }
        for r in rows
    ]
