"""The cluster's metrics (GET /metrics, SPEC §6): what workers add to Redis as jobs and steps finish, and
the figures any web process reads back for a scrape (web/metrics.py writes them as Prometheus text).

Why in Redis hashes. Every web process must answer the same cluster-wide figures, so the counters cannot
live in one process's memory: prometheus_client's own counters would count only that process's work
(and its multiprocess mode shares files, so one host). Workers add to four hashes instead: HINCRBY for
counts and histogram buckets, HINCRBYFLOAT for sums (`add`). A worker gathers its additions in memory
and sends them in one pipeline every FLUSH_S (worker/counts.py), each only once the write it counts has
committed: a job's hot path pays a dict addition, and Redis one round trip a fraction of a second
whatever the rate. A scrape is then the same small work however many jobs there are: four HGETALLs
(their fields are runbooks x statuses, runbooks x buckets and actions x statuses, none per job), one
`GROUP BY status` over the active jobs (the index ix_jobs_status_created covers it, so only the
queued, running, waiting and paused rows are read, not the history) and the worker registry
(orchestrator/workers.py). Counting finished jobs in the database at each scrape would read the whole
history every time, and deleting old jobs would make a counter go down.

A Redis flush (or a new Redis) empties the hashes: the counters start again from zero, which Prometheus
takes as a counter reset (`rate()` and `increase()` account for it). The gauges are read fresh each time.

Which finished jobs are counted, each once: every run a worker ends (completed, failed, or cancelled or
rejected while it ran or waited), by that worker once the end is committed, with the status that stands;
and every job cancelled before a run took it (orchestrator/jobs.py). Runs reported by other tools (the
ingest API) are not this orchestrator's runs and are not counted; nor is a job failed by the reaper after
its workers were lost, or whose approval timed out after its worker was lost (no run is left to report it).

Labels are bounded: runbook names (the catalog), action names (the action registry) and statuses: no
job id, user or free text.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import workers
from orchestrator.db import tables as t
from orchestrator.db.engine import reading
from orchestrator.keys import (
    METRICS_DELAY_KEY,
    METRICS_DURATION_KEY,
    METRICS_JOBS_KEY,
    METRICS_NOTIFY_KEY,
    METRICS_SLA_KEY,
    METRICS_STEPS_KEY,
)
from orchestrator.states import JobStatus

log = logging.getLogger(__name__)

#: Upper bounds (seconds) of the job duration buckets: browser runbooks take seconds to an hour.
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
#: Upper bounds (seconds) of the start delay buckets (queued to running): milliseconds when a worker is
#: free, minutes when the queue is long.
DELAY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
#: The statuses orchestrator_jobs counts (a gauge: jobs in each now).
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.WAITING_FOR_APPROVAL, JobStatus.PAUSED)

#: One addition to a hash: (key, field, amount); an int is HINCRBY, a float HINCRBYFLOAT.
Add = tuple[str, str, int | float]
#: Between the labels of a field: never in a runbook name, an action name or a status.
SEP = " "
SUM = "sum"
INF = "+Inf"


def _le(bound: float) -> str:
    return INF if math.isinf(bound) else repr(float(bound))


def _bucket(value: float, bounds: Sequence[float]) -> str:
    """The `le` of the smallest bucket holding `value` (Prometheus buckets hold values <= their bound)."""
    at = bisect.bisect_left(bounds, value)
    return INF if at == len(bounds) else _le(bounds[at])


def job_finished(runbook: str, status: str) -> list[Add]:
    """A job of `runbook` ended with `status` (completed, failed, cancelled)."""
    return [(METRICS_JOBS_KEY, f"{runbook}{SEP}{status}", 1)]


def job_duration(runbook: str, seconds: float) -> list[Add]:
    """A run of `runbook` took `seconds`, from its start to its end."""
    seconds = max(0.0, float(seconds))
    return [
        (METRICS_DURATION_KEY, f"{runbook}{SEP}{_bucket(seconds, DURATION_BUCKETS)}", 1),
        (METRICS_DURATION_KEY, f"{runbook}{SEP}{SUM}", seconds),
    ]


def job_started(delay_s: float) -> list[Add]:
    """A job was first claimed `delay_s` after it was queued (or after the time it was scheduled for)."""
    delay_s = max(0.0, float(delay_s))
    return [(METRICS_DELAY_KEY, _bucket(delay_s, DELAY_BUCKETS), 1), (METRICS_DELAY_KEY, SUM, delay_s)]


def step_finished(action: str, status: str) -> list[Add]:
    """A (top-level) step of `action` ended with `status`."""
    return [(METRICS_STEPS_KEY, f"{action}{SEP}{status}", 1)]


def sla_missed(runbook: str, limit: str) -> list[Add]:
    """A job of `runbook` went over its `limit` (queued, running, waiting) of settings.sla."""
    return [(METRICS_SLA_KEY, f"{runbook}{SEP}{limit}", 1)]


def notification(event: str, status: str) -> list[Add]:
    """A notification about `event` was tried: sent, logged, pending (to be retried) or failed (given up)."""
    return [(METRICS_NOTIFY_KEY, f"{event}{SEP}{status}", 1)]


async def add(redis: Redis, adds: Iterable[Add]) -> None:
    """Send these additions in one pipeline (no transaction: each is atomic on its own)."""
    async with redis.pipeline(transaction=False) as pipe:
        for key, name, amount in adds:
            if isinstance(amount, int):
                pipe.hincrby(key, name, amount)
            else:
                pipe.hincrbyfloat(key, name, amount)
        await pipe.execute()


async def add_quietly(redis: Redis, adds: Iterable[Add]) -> None:
    """`add`, best effort: a metric lost while Redis is away must not fail the action it counts."""
    try:
        await add(redis, adds)
    except (RedisError, OSError) as exc:
        log.warning("could not add to the metrics (%s)", exc)


# -- reading ------------------------------------------------------------------------------------


@dataclass
class Histogram:
    """A histogram as Prometheus writes it: cumulative counts by upper bound (the last one +Inf), and the sum."""

    buckets: list[tuple[str, int]]
    sum: float


@dataclass
class Figures:
    """What one scrape shows."""

    jobs_total: dict[tuple[str, str], int] = field(default_factory=dict)  # (runbook, status)
    durations: dict[str, Histogram] = field(default_factory=dict)  # by runbook
    start_delay: Histogram = field(default_factory=lambda: _histogram({}, 0.0, DELAY_BUCKETS))
    steps_total: dict[tuple[str, str], int] = field(default_factory=dict)  # (action, status)
    sla_missed: dict[tuple[str, str], int] = field(default_factory=dict)  # (runbook, limit)
    notifications: dict[tuple[str, str], int] = field(default_factory=dict)  # (event, status)
    jobs: dict[str, int] = field(default_factory=dict)  # active status -> jobs in it now
    workers: int = 0  # live worker processes
    busy_slots: int = 0
    free_slots: int = 0


async def read(engine: AsyncEngine, redis: Redis) -> Figures:
    """The cluster's figures now: the counters from Redis, the active jobs from the database, the
    workers from their registry (the three read at once)."""
    hashes, active, listed = await asyncio.gather(_hashes(redis), active_jobs(engine), workers.listed(redis))
    jobs_hash, duration_hash, delay_hash, steps_hash, sla_hash, notify_hash = hashes
    figures = Figures(
        jobs_total=_counts(jobs_hash),
        durations=_histograms(duration_hash, DURATION_BUCKETS),
        start_delay=_histograms(delay_hash, DELAY_BUCKETS).get("", _histogram({}, 0.0, DELAY_BUCKETS)),
        steps_total=_counts(steps_hash),
        sla_missed=_counts(sla_hash),
        notifications=_counts(notify_hash),
        jobs=active,
    )
    for worker in listed:
        if worker["status"] == workers.LIVE:
            figures.workers += 1
            figures.busy_slots += worker["busy_slots"]
            figures.free_slots += max(0, worker["concurrency"] - worker["busy_slots"])
    return figures


HASHES = (
    METRICS_JOBS_KEY,
    METRICS_DURATION_KEY,
    METRICS_DELAY_KEY,
    METRICS_STEPS_KEY,
    METRICS_SLA_KEY,
    METRICS_NOTIFY_KEY,
)


async def _hashes(redis: Redis) -> list[dict[Any, Any]]:
    async with redis.pipeline(transaction=False) as pipe:
        for key in HASHES:
            pipe.hgetall(key)
        found: list[dict[Any, Any]] = await pipe.execute()
    return found


ACTIVE_COUNTS = (
    select(t.jobs.c.status, func.count())
    .where(t.jobs.c.status.in_([s.value for s in ACTIVE]))
    .group_by(t.jobs.c.status)
)


async def active_jobs(engine: AsyncEngine) -> dict[str, int]:
    """Jobs in each active status now (0 for a status none is in)."""
    async with reading(engine) as conn:
        rows = (await conn.execute(ACTIVE_COUNTS)).all()
    found = {s.value: 0 for s in ACTIVE}
    found.update({row[0]: int(row[1]) for row in rows})
    return found


def _text(raw: dict[Any, Any]) -> dict[str, str]:
    return {_str(k): _str(v) for k, v in raw.items()}


def _str(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _number(text: str) -> float | None:
    with contextlib.suppress(ValueError):
        value = float(text)
        return value if math.isfinite(value) else None
    return None


def _counts(raw: dict[Any, Any]) -> dict[tuple[str, str], int]:
    """A hash of "LABEL LABEL" -> count; a field of another shape (not written here) is left out."""
    found: dict[tuple[str, str], int] = {}
    for name, value in _text(raw).items():
        labels, amount = name.split(SEP), _number(value)
        if len(labels) == 2 and all(labels) and amount is not None:
            found[labels[0], labels[1]] = int(amount)
    return found


def _histograms(raw: dict[Any, Any], bounds: Sequence[float]) -> dict[str, Histogram]:
    """A hash of "NAME LE" -> count in that bucket alone, and "NAME sum", as one histogram per NAME ("" for
    a hash of one histogram: "LE" and "sum"). A bucket of bounds since changed is counted in the first
    bucket of these bounds that holds it."""
    counts: dict[str, dict[int, int]] = {}
    sums: dict[str, float] = {}
    for name, value in _text(raw).items():
        owner, _, le = name.rpartition(SEP)
        amount = _number(value)
        if amount is None or SEP in owner:
            continue
        if le == SUM:
            sums[owner] = amount
            continue
        bound = math.inf if le == INF else _number(le)
        if bound is None:
            continue
        at = bisect.bisect_left(bounds, bound)
        counts.setdefault(owner, {})[at] = counts.get(owner, {}).get(at, 0) + int(amount)
    return {owner: _histogram(counts.get(owner, {}), sums.get(owner, 0.0), bounds) for owner in counts.keys() | sums}


def _histogram(counts: dict[int, int], total: float, bounds: Sequence[float]) -> Histogram:
    running, buckets = 0, []
    for at, bound in enumerate([*bounds, math.inf]):
        running += counts.get(at, 0)
        buckets.append((_le(bound), running))
    return Histogram(buckets, total)
