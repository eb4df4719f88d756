"""settings.concurrency across worker processes, and priorities when the pool is saturated."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from orchestrator import jobs, queue
from orchestrator.db import tables as t
from orchestrator.db.engine import reading
from orchestrator.db.tables import utcnow
from orchestrator.jobs import JobRequest
from orchestrator.states import Action
from tests.integration.conftest import Env, orch_process, running_worker, until

LIMITED = """
name: one-at-a-time
settings: {concurrency: %d}
steps:
  - {id: nap, action: sleep, seconds: 0.6}
"""

UNLIMITED = """
name: napper
steps:
  - {id: nap, action: sleep, seconds: 0.5}
"""


async def statuses(env: Env, ids: list[str]) -> list[Any]:
    async with reading(env.svc.engine) as conn:
        return list(await conn.execute(select(t.jobs).where(t.jobs.c.id.in_(ids))))


async def watch(env: Env, ids: list[str], seconds: float = 90) -> tuple[list[Any], int]:
    """Sample the jobs until all completed; returns the final rows and the most ever running at once."""
    most = 0
    async with asyncio.timeout(seconds):
        while True:
            rows = await statuses(env, ids)
            most = max(most, sum(r.status == "running" for r in rows))
            if all(r.status in ("completed", "failed", "cancelled") for r in rows):
                return rows, most
            await asyncio.sleep(0.03)


def overlap(rows: list[Any]) -> int:
    """The most jobs whose [started_at, finished_at] intervals overlap at one moment."""
    edges = sorted([(t.aware(r.started_at), 1) for r in rows] + [(t.aware(r.finished_at), -1) for r in rows])
    running = most = 0
    for _, change in edges:
        running += change
        most = max(most, running)
    return most


async def test_concurrency_one_runs_five_jobs_one_after_another_in_order_across_two_workers(env: Env) -> None:
    env.write(LIMITED % 1)
    made = [await env.create("one-at-a-time") for _ in range(5)]
    ids = [j["id"] for j in made]
    with (
        orch_process(env, "worker", ORCH_WORKER_CONCURRENCY="3"),
        orch_process(env, "worker", ORCH_WORKER_CONCURRENCY="3"),
    ):
        rows, most = await watch(env, ids)
    assert {r.status for r in rows} == {"completed"}
    assert most == 1 and overlap(rows) == 1
    by_start = sorted(rows, key=lambda r: t.aware(r.started_at))
    assert [r.id for r in by_start] == ids  # in the order they were queued
    assert len({r.robot for r in rows}) >= 1


async def test_concurrency_two_caps_but_uses_both_slots(env: Env) -> None:
    env.write(LIMITED % 2)
    ids = [(await env.create("one-at-a-time"))["id"] for _ in range(6)]
    with (
        orch_process(env, "worker", ORCH_WORKER_CONCURRENCY="4"),
        orch_process(env, "worker", ORCH_WORKER_CONCURRENCY="4"),
    ):
        rows, most = await watch(env, ids)
    assert {r.status for r in rows} == {"completed"}
    assert most <= 2 and overlap(rows) == 2


async def test_two_workers_fill_every_slot_and_start_each_job_once(env: Env) -> None:
    """Workers claim queued jobs for all their free slots at once (worker/main.py CLAIM): both
    workers' four slots fill, and no job starts twice although both pick from the same queue."""
    env.write(UNLIMITED)
    ids = [(await env.create("napper"))["id"] for _ in range(24)]
    with (
        orch_process(env, "worker", ORCH_WORKER_CONCURRENCY="4"),
        orch_process(env, "worker", ORCH_WORKER_CONCURRENCY="4"),
    ):
        rows, _ = await watch(env, ids)
    assert {(r.status, r.attempt) for r in rows} == {("completed", 1)}
    assert overlap(rows) == 8
    assert len({r.robot for r in rows}) == 2
    async with reading(env.svc.engine) as conn:
        changes = (
            await conn.execute(
                select(t.events.c.job_id, t.events.c.data).where(
                    t.events.c.type == "status", t.events.c.job_id.in_(ids)
                )
            )
        ).all()
    started = [row.job_id for row in changes if row.data["status"] == "running"]
    assert sorted(started) == sorted(ids)  # each job started once


async def test_a_job_cancelled_while_waiting_for_a_slot_passes_its_turn_on(env: Env) -> None:
    env.write(LIMITED % 1)
    first, second, third = [(await env.create("one-at-a-time"))["id"] for _ in range(3)]
    async with running_worker(env, concurrency=3):
        await until(env, first, "running")
        await jobs.act(env.svc, second, Action.CANCEL, "tests")
        done = await until(env, third, "completed")
    assert done["status"] == "completed"
    assert (await jobs.get(env.svc, second))["started_at"] is None


SLOW = """
name: blocker
steps:
  - {id: nap, action: sleep, seconds: 1.5}
"""
QUICK = """
name: quick
steps:
  - {id: one, action: set, values: {a: 1}}
"""


async def test_when_the_pool_is_full_high_starts_first_and_low_last(env: Env) -> None:
    env.write(SLOW)
    env.write(QUICK)
    async with running_worker(env, concurrency=1):
        blocker = await env.create("blocker")
        await until(env, blocker["id"], "running")
        order = [("normal", "a"), ("low", "l"), ("normal", "b"), ("high", "c")]
        made = {}
        for priority, tag in order:
            job, _ = await jobs.create(env.svc, "quick", JobRequest(priority=priority, tags=[tag]))
            made[job["id"]] = tag
        for job_id in made:
            await until(env, job_id, "completed")
    rows = await statuses(env, list(made))
    started = [made[r.id] for r in sorted(rows, key=lambda r: t.aware(r.started_at))]
    assert started == ["c", "a", "b", "l"]


async def test_a_low_job_that_waited_long_enough_goes_before_newer_normal_and_high_jobs(env: Env) -> None:
    """Age raises a low job: scores are fixed when queued, so a low job queued a while ago beats
    newer normal jobs after a minute and newer high jobs after ten (checked in arq's own queue)."""
    pool = env.svc.redis
    start = utcnow()

    async def put(name: str, priority: str, at: datetime) -> None:
        assert await queue.enqueue(pool, name, 1, priority, now=at)

    await put("low-old", "low", start)
    await put("normal-new", "normal", start + timedelta(seconds=61))
    await put("high-new", "high", start + timedelta(minutes=9))
    await put("high-newer", "high", start + timedelta(minutes=11))
    ids = [i.decode().split(":")[0] for i in await pool.zrange("arq:queue", 0, -1)]
    assert ids == ["high-new", "low-old", "normal-new", "high-newer"]
