"""The worker registry: each worker process announces itself in Redis when it starts and at every
heartbeat (worker/presence.py), and withdraws when it stops cleanly; GET /api/v1/workers, the /workers
page and the worker gauges of /metrics read it.

A worker's record (`orch:worker:{id}`, JSON; its id is its `robot` name, HOST:PID, as jobs show it) holds
its host, pid, version, concurrency, busy slots, the ids of the jobs it runs now, when it started, and
its own rhythm: `lost_after_s` and `gone_after_s` (ORCH_WORKER_LOST_S, default 6 s: three missed beats of
two seconds; ORCH_WORKER_GONE_S, default 300 s). Each beat writes the whole record again, so the next
beat after a Redis flush puts it back, with an expiry of gone_after_s: a worker that stopped beating
shows as `lost` once its last beat is older than lost_after_s, and disappears when the record expires.
How old the last beat is comes from the record's remaining time to live, by Redis's clock, so no
clock of another host is compared with this one's. `orch:workers` lists the ids; readers drop the ids
whose record expired.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from importlib import metadata
from typing import Any

from redis.asyncio import Redis

from orchestrator.db.tables import utcnow
from orchestrator.keys import WORKERS_KEY, worker_key
from orchestrator.views import iso

LIVE, LOST = "live", "lost"
#: The record's fields a reader needs; a record without them (not written here) is left out.
FIELDS = ("host", "pid", "version", "concurrency", "busy_slots", "running_jobs", "started_at", "lost_after_s")


def version() -> str:
    """The installed package's version (pyproject.toml)."""
    try:
        return metadata.version("runbook-orchestrator")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


@dataclass
class Record:
    """What a worker announces at each beat."""

    id: str
    concurrency: int
    lost_after_s: float
    gone_after_s: float
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    version: str = field(default_factory=version)
    started_at: str = field(default_factory=lambda: iso(utcnow()) or "")
    busy_slots: int = 0
    running_jobs: list[str] = field(default_factory=list)


async def announce(redis: Redis, record: Record) -> None:
    """Write the worker's whole record, to expire gone_after_s from now, and list its id."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.set(worker_key(record.id), json.dumps(asdict(record)), px=int(record.gone_after_s * 1000))
        pipe.sadd(WORKERS_KEY, record.id)
        await pipe.execute()


async def withdraw(redis: Redis, worker_id: str) -> None:
    """A worker stopped cleanly: it is gone at once."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.delete(worker_key(worker_id))
        pipe.srem(WORKERS_KEY, worker_id)
        await pipe.execute()


async def listed(redis: Redis) -> list[dict[str, Any]]:
    """Every worker that beat within its gone_after_s, by host and pid, each `live` or `lost` (its last
    beat older than its lost_after_s) and when it was last seen."""
    ids = sorted(_str(i) for i in await redis.smembers(WORKERS_KEY))  # type: ignore[misc]  # redis-py's sync|async union
    if not ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for worker_id in ids:
            pipe.get(worker_key(worker_id))
            pipe.pttl(worker_key(worker_id))
        answers = await pipe.execute()
    now = utcnow()
    found, expired = [], []
    for worker_id, raw, ttl_ms in zip(ids, answers[::2], answers[1::2], strict=True):
        shown = _shown(worker_id, raw, ttl_ms, now)
        if shown is None:
            expired.append(worker_id)
        else:
            found.append(shown)
    if expired:
        await redis.srem(WORKERS_KEY, *expired)  # type: ignore[misc]
    return sorted(found, key=lambda w: (w["host"], w["pid"]))


def _shown(worker_id: str, raw: Any, ttl_ms: int, now: datetime) -> dict[str, Any] | None:
    """A record as the API shows it; None when it expired (or is not a record)."""
    if raw is None or ttl_ms is None or ttl_ms < 0:
        return None
    try:
        record = json.loads(raw)
        since = max(0.0, float(record["gone_after_s"]) - ttl_ms / 1000)  # how long ago the last beat was
        shown = {name: record[name] for name in FIELDS}
    except (ValueError, TypeError, KeyError):
        return None
    return {
        "id": worker_id,
        **{k: v for k, v in shown.items() if k != "lost_after_s"},
        "last_seen_at": iso(now - timedelta(seconds=since)),
        "status": LOST if since > float(shown["lost_after_s"]) else LIVE,
    }


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
