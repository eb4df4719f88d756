"""GET /metrics with 100,000 jobs (and their steps) in the database, on SQLite and on PostgreSQL: scrapes
timed through the app (its token check, the Redis and database reads, the text), after the counters
were filled as the workers would have filled them over those jobs, with four workers registered.

Run alone: `.venv/bin/python -m bench.metrics` (PostgreSQL at ORCH_TEST_POSTGRES or the local one)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import insert, text

from bench.harness import flush_redis, percentile, redis_server, services, workspace
from bench.joblist import COUNT, _rows
from orchestrator import auth, metrics, workers
from orchestrator.config import Settings
from orchestrator.db import tables as t
from orchestrator.db.engine import writing
from orchestrator.dev import scratch_postgres
from orchestrator.services import Services
from web.app import create_app

SCRAPES = 50
WARM = 5
ACTIONS = ("goto", "fill", "click")
#: Each job's three steps' statuses, by the job's status.
STEPS = {
    "completed": ("success", "success", "success"),
    "failed": ("success", "failed", "pending"),
    "cancelled": ("success", "cancelled", "pending"),
    "running": ("success", "running", "pending"),
}


def _steps(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for job in jobs:
        statuses = STEPS.get(job["status"], ("pending",) * 3)
        for position, (action, status) in enumerate(zip(ACTIONS, statuses, strict=True)):
            done = status not in ("pending", "running")
            rows.append(
                {
                    "job_id": job["id"],
                    "position": position,
                    "step_id": f"step-{position + 1}",
                    "action": action,
                    "status": status,
                    "started_at": job["started_at"] if status != "pending" else None,
                    "finished_at": job["started_at"] + timedelta(seconds=position + 1) if done else None,
                    "duration_s": 1.0 if done else None,
                }
            )
    return rows


def _counted(jobs: list[dict[str, Any]]) -> list[metrics.Add]:
    """The counters' fields as the workers would have left them after running these jobs."""
    total: dict[tuple[str, str], int | float] = {}
    for job in jobs:
        adds = metrics.job_started(0.05)
        if job["status"] in ("completed", "failed", "cancelled"):
            adds += metrics.job_finished(job["runbook"], job["status"])
            adds += metrics.job_duration(job["runbook"], job["duration_s"])
        for action, status in zip(ACTIONS, STEPS.get(job["status"], ()), strict=False):
            if status not in ("pending", "running"):
                adds += metrics.step_finished(action, status)
        for key, name, amount in adds:
            total[key, name] = total.get((key, name), 0) + amount
    return [(key, name, amount) for (key, name), amount in total.items()]


async def _fill(svc: Services) -> None:
    jobs = _rows(COUNT)
    steps = _steps(jobs)
    async with writing(svc.engine) as conn:
        for chunk in range(0, len(jobs), 5000):
            await conn.execute(insert(t.jobs), jobs[chunk : chunk + 5000])
        for chunk in range(0, len(steps), 15000):
            await conn.execute(insert(t.steps), steps[chunk : chunk + 15000])
    if svc.engine.dialect.name == "postgresql":  # what autovacuum does after such a load, before it is timed
        async with svc.engine.connect() as conn:
            await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(text("VACUUM ANALYZE"))
    await metrics.add(svc.redis, _counted(jobs))
    running = [job["id"] for job in jobs if job["status"] == "running"]
    for n in range(4):
        record = workers.Record(id=f"host-{n}:{100 + n}", concurrency=10, lost_after_s=6, gone_after_s=300)
        record.running_jobs, record.busy_slots = running[n * 10 : n * 10 + 10], 10
        await workers.announce(svc.redis, record)


@contextlib.asynccontextmanager
async def _scraper(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The web app in this process, over httpx, with a token of the metrics role."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        token = await auth.create_token(app.state.svc.engine, "prometheus", "metrics", created_by="bench")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers={"Authorization": f"Bearer {token}"}
        ) as http:
            yield http


async def _timed(settings: Settings) -> tuple[float, float, int]:
    """p50 and p99 (ms) of SCRAPES scrapes, and the size of one."""
    async with services(settings) as svc:
        await _fill(svc)
    async with _scraper(settings) as http:
        for _ in range(WARM):
            answer = await http.get("/metrics")
            assert answer.status_code == 200, answer.text
        samples = []
        for _ in range(SCRAPES):
            began = time.perf_counter()
            answer = await http.get("/metrics")
            samples.append((time.perf_counter() - began) * 1000)
            assert answer.status_code == 200
        assert "orchestrator_workers 4.0" in answer.text, answer.text[-2000:]
    return percentile(samples, 50), percentile(samples, 99), len(answer.content)


async def run(redis_url: str) -> list[tuple[str, str, str, str]]:
    """One row: the scrape's p50 and p99 on SQLite and on PostgreSQL."""
    found = {}
    for database in ("SQLite", "PostgreSQL"):
        await flush_redis(redis_url)
        with workspace({}, redis_url) as settings:
            async with contextlib.AsyncExitStack() as stack:
                if database == "PostgreSQL":
                    settings = replace(settings, database_url=await stack.enter_async_context(scratch_postgres()))
                found[database] = await _timed(settings)
    worst = max(p99 for _, p99, _ in found.values())
    detail = ", ".join(f"{db} p50 {p50:.1f} ms, p99 {p99:.1f} ms" for db, (p50, p99, _) in found.items())
    size = found["SQLite"][2]
    return [
        (
            f"/metrics scrape with {COUNT:,} jobs and their steps, through the app ({SCRAPES} scrapes, {size:,} bytes)",
            detail,
            "-",
            f"p99 {worst:.1f} ms (target < 100 ms)",
        )
    ]


async def main() -> None:
    with redis_server() as redis_url:
        for row in await run(redis_url):
            print(" | ".join(row))


if __name__ == "__main__":
    asyncio.run(main())
