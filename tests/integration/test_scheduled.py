"""Jobs with run_at: held in `scheduled` until their time, then run; cancelled ones never run."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from orchestrator import jobs
from orchestrator.states import Action
from tests.integration.conftest import Env, http_client
from worker.main import build_worker

RUNBOOK = """
name: later
steps:
  - {id: one, action: set, values: {a: 1}}
"""


async def test_a_job_for_later_waits_in_scheduled_then_runs_and_a_cancelled_one_never_runs(env: Env) -> None:
    env.write(RUNBOOK)
    when = datetime.now(UTC) + timedelta(seconds=2)
    async with http_client(env.settings, role="operator") as http:
        later = (await http.post("/api/v1/runbooks/later/jobs", json={"run_at": when.isoformat()})).json()
        dropped = (await http.post("/api/v1/runbooks/later/jobs", json={"run_at": when.isoformat()})).json()
    assert later["status"] == dropped["status"] == "scheduled"
    assert later["scheduled_at"].startswith(when.strftime("%Y-%m-%dT%H:%M:%S"))
    await jobs.act(env.svc, dropped["id"], Action.CANCEL, "tests", "not needed")
    worker = build_worker(env.settings, svc=env.svc, concurrency=2, poll_delay=0.1)
    worker._handle_signals = False
    task = asyncio.create_task(worker.main())
    try:
        await asyncio.sleep(1)
        assert (await jobs.get(env.svc, later["id"]))["status"] == "scheduled"  # not before its time
        async with asyncio.timeout(30):
            while (await jobs.get(env.svc, later["id"]))["status"] != "completed":
                await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await worker.close()
    done = await jobs.get(env.svc, later["id"])
    started = datetime.fromisoformat(done["started_at"].replace("Z", "+00:00"))
    assert started >= when - timedelta(milliseconds=50)
    never = await jobs.get(env.svc, dropped["id"])
    assert never["status"] == "cancelled" and never["started_at"] is None
