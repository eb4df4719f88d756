"""Two schedulers and several workers on one PostgreSQL database and one Redis (issue 18, item 5): a
batch of jobs runs while one worker is SIGKILLed mid-job and another SIGTERMed, the queued jobs are
flushed from Redis, a schedule fires every second and an approval times out. Every job completes
exactly once, every fire time makes one job, the timeout and the reconciliation happen once."""

from __future__ import annotations

import json
import signal
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from orchestrator import cron
from tests.e2e.cluster import Cluster, cluster, until

SLOW = """
name: slow
steps:
  - {id: before, action: set, values: {a: 1}}
  - {id: wait, action: sleep, seconds: 4}
  - {id: after, action: set, values: {b: 2}}
"""
QUICK = """
name: quick
steps:
  - {id: only, action: set, values: {a: 1}}
"""
TICK = """
name: tick
steps:
  - {id: tock, action: set, values: {a: 1}}
"""
ASK = """
name: ask
steps:
  - {id: sign-off, action: approval, message: "Anybody?", timeout: 3, on_timeout: reject}
  - {id: never, action: set, values: {a: 1}}
"""
STEPS = {"slow": ["before", "wait", "after"], "quick": ["only"], "tick": ["tock"], "ask": ["sign-off", "never"]}
ARQ_QUEUE = "arq:queue"


async def running_slow_jobs(c: Cluster) -> dict[str, str]:
    """{job id: the robot (host:pid) running it} for the slow jobs in their `wait` step now."""
    rows = await c.rows(
        "SELECT j.id, j.robot FROM jobs j JOIN job_steps s ON s.job_id = j.id"
        " WHERE j.runbook = 'slow' AND j.status = 'running' AND s.step_id = 'wait' AND s.status = 'running'"
    )
    return {row["id"]: row["robot"] for row in rows}


async def statuses(c: Cluster, job_id: str) -> list[tuple[str | None, str]]:
    """The job's status moves, (previous, status), in the order of its events."""
    rows = await c.rows(
        "SELECT data::text AS data FROM job_events WHERE job_id = $1 AND type = 'status' ORDER BY id", job_id
    )
    return [(d["previous"], d["status"]) for d in (json.loads(r["data"]) for r in rows)]


async def event_counts(c: Cluster, job_id: str) -> Counter[str]:
    """How often each kind of end showed in the job's events: `report`, and `success:STEP` per step."""
    rows = await c.rows("SELECT type, data::text AS data FROM job_events WHERE job_id = $1 ORDER BY id", job_id)
    seen: Counter[str] = Counter()
    for row in rows:
        data = json.loads(row["data"])
        if row["type"] == "report":
            seen["report"] += 1
        elif row["type"] == "step" and data["step"]["status"] in ("success", "failed"):
            seen[f"{data['step']['status']}:{data['step']['id']}"] += 1
    return seen


def worker_of(c: Cluster, robot: str) -> str:
    pid = int(robot.rsplit(":", 1)[1])
    [name] = [name for name, child in c.children.items() if child.pid == pid]
    return name


async def test_two_schedulers_and_failing_workers_run_every_job_exactly_once(tmp_path: Path) -> None:
    runbooks = {"slow": SLOW, "quick": QUICK, "tick": TICK, "ask": ASK}
    async with cluster(tmp_path, runbooks, ORCH_WORKER_CONCURRENCY="2") as c:
        web = await c.web("web")
        for name in ("scheduler-1", "scheduler-2"):
            c.start(name, "scheduler")
        for name in ("worker-1", "worker-2", "worker-3"):
            c.start(name, "worker")
        redis = aioredis.from_url(c.env["ORCH_REDIS_URL"])
        api = httpx.AsyncClient(base_url=web, headers={"Authorization": f"Bearer {c.token()}"}, timeout=30)
        async with api:
            await run_through_failures(c, api, redis)
        await redis.aclose()


async def run_through_failures(c: Cluster, api: httpx.AsyncClient, redis: aioredis.Redis) -> None:
    schedule = await api.post(
        "/api/v1/schedules", json={"runbook": "tick", "cron": "* * * * * *", "timezone": "UTC", "overlap": "allow"}
    )
    assert schedule.status_code == 201, schedule.text
    batch = []
    for name in ["slow"] * 6 + ["quick"] * 4 + ["ask"]:
        made = await api.post(f"/api/v1/runbooks/{name}/jobs", json={})
        assert made.status_code == 201, made.text
        batch.append(made.json()["id"])

    # Six slots run the slow jobs; what waits behind them Redis loses (its arq queue flushed)
    async def full() -> list[str] | None:
        queued = await c.rows("SELECT id FROM jobs WHERE status = 'queued'")
        return [r["id"] for r in queued] if len(await running_slow_jobs(c)) >= 4 and queued else None

    lost_from_redis = await until(full, 60)
    await redis.delete(ARQ_QUEUE)
    interrupted = await kill_and_stop(c)

    async def batch_done() -> bool:
        rows = await c.rows("SELECT status FROM jobs WHERE id = ANY($1::text[])", batch)
        return all(r["status"] in ("completed", "failed", "cancelled") for r in rows)

    try:
        await until(batch_done, 120)
    except TimeoutError:
        left = await c.rows("SELECT id, runbook, status, attempt, robot FROM jobs WHERE id = ANY($1::text[])", batch)
        raise AssertionError(f"{[dict(r) for r in left]}\n{await redis.keys('arq:*')}\n{c.logs()}") from None
    paused = await api.patch(f"/api/v1/schedules/{schedule.json()['id']}", json={"active": False})
    assert paused.status_code == 200, paused.text

    async def ticks_done() -> list[Any] | None:
        rows = await c.rows("SELECT * FROM jobs WHERE runbook = 'tick' ORDER BY created_at")
        return rows if all(r["status"] in ("completed", "failed") for r in rows) else None

    ticks = await until(ticks_done, 60)
    jobs = {r["id"]: r for r in await c.rows("SELECT * FROM jobs WHERE id = ANY($1::text[])", batch)}
    jobs.update({r["id"]: r for r in ticks})
    for job in jobs.values():
        await ran_once(c, job)
    for job_id in interrupted:  # taken over (the killed worker's) or handed back (the stopped one's)
        assert jobs[job_id]["attempt"] == 2, (await statuses(c, job_id), c.logs())
        assert await statuses(c, job_id) == [
            (None, "queued"),
            ("queued", "running"),
            ("running", "queued"),
            ("queued", "running"),
            ("running", "completed"),
        ]
    assert all(jobs[job_id]["status"] in ("completed", "failed") for job_id in lost_from_redis)
    [asked] = [job for job in jobs.values() if job["runbook"] == "ask"]
    await timed_out_once(c, asked)
    fired_once_each(ticks)
    await nothing_left_on_arq(redis)


async def kill_and_stop(c: Cluster) -> list[str]:
    """SIGKILL one worker mid-job and SIGTERM another (it hands its jobs back); start one more.
    Returns the slow jobs they ran."""
    running = await running_slow_jobs(c)
    robots = sorted(set(running.values()))
    assert len(robots) >= 2, (running, c.logs())
    killed, stopped = worker_of(c, robots[0]), worker_of(c, robots[1])
    c.signal(killed, signal.SIGKILL)
    c.signal(stopped, signal.SIGTERM)
    assert c.children[stopped].wait(30) == 0, c.logs()
    c.start("worker-4", "worker")
    return [job for job, robot in running.items() if robot in robots[:2]]


async def ran_once(c: Cluster, job: Any) -> None:
    """The job ran to its end exactly once: one end, one report, each step done once."""
    expected = "failed" if job["runbook"] == "ask" else "completed"
    assert job["status"] == expected, (dict(job), c.logs())
    moves = await statuses(c, job["id"])
    assert len([m for m in moves if m[1] in ("completed", "failed", "cancelled")]) == 1, moves
    counts = await event_counts(c, job["id"])
    assert counts["report"] == 1, counts
    if job["runbook"] != "ask":
        done = {k: v for k, v in counts.items() if k != "report"}
        assert done == {f"success:{s}": 1 for s in STEPS[job["runbook"]]}, (job["id"], counts)
    steps = await c.rows("SELECT step_id FROM job_steps WHERE job_id = $1 ORDER BY position", job["id"])
    assert [s["step_id"] for s in steps] == STEPS[job["runbook"]]


async def timed_out_once(c: Cluster, job: Any) -> None:
    """The approval nobody decided timed out once, by its own rule, and no person acted."""
    moves = await statuses(c, job["id"])
    assert moves[-2:] == [("running", "waiting_for_approval"), ("waiting_for_approval", "failed")], moves
    assert len([m for m in moves if m[0] == "waiting_for_approval"]) == 1, moves
    approval = json.loads(job["approval"])
    assert approval["by"] == "timeout" and approval["decision"] == "rejected"
    assert await c.rows("SELECT * FROM audit WHERE job_id = $1", job["id"]) == []


def fired_once_each(ticks: list[Any]) -> None:
    """Every fire time of the schedule made one job (its scheduled_at), and none was skipped while
    both schedulers ran."""
    fired = [datetime.fromisoformat(json.loads(r["data"])["fire_time"]) for r in ticks]
    assert len(fired) >= 5, fired
    assert len(set(fired)) == len(fired), sorted(fired)
    assert sorted(fired) == cron.between("* * * * * *", "UTC", min(fired), max(fired)), sorted(fired)
    assert [r["scheduled_at"] for r in ticks] == fired


async def nothing_left_on_arq(redis: aioredis.Redis) -> None:
    """arq holds nothing more of any job: none to run again, no attempt of a lost or stopped worker
    (a worker deletes a finished job's keys a moment after its last write)."""

    async def arq_keys() -> list[bytes]:
        return [key for key in await redis.keys("arq:*") if key != b"arq:queue:health-check"]

    async def cleared() -> bool:
        return not await arq_keys()

    try:
        await until(cleared, 10)
    except TimeoutError:
        raise AssertionError(f"arq still holds {await arq_keys()}") from None
