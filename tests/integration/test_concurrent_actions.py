"""Two people act on one job at the same moment: exactly one transition is recorded, the other gets 409.

Run over real HTTP against uvicorn, on SQLite and on the machine's PostgreSQL, 100 times each.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from orchestrator import events
from orchestrator.db.engine import reading, writing
from orchestrator.states import JobStatus
from orchestrator.transitions import move
from tests.integration.conftest import Env, bearer, live_server

ROUNDS = 100
SEEN = "waiting_for_approval"
RUNBOOK = """
name: gate
steps:
  - {id: ask, action: approval, message: "Go on?"}
"""


async def waiting_job(env: Env) -> str:
    """A job in waiting_for_approval, brought there through the state table (no worker needed)."""
    job = await env.create("gate")
    moved: list[events.Pending] = []
    async with writing(env.svc.engine) as conn:
        await move(conn, job["id"], JobStatus.RUNNING, events=moved)
        await move(conn, job["id"], JobStatus.WAITING_FOR_APPROVAL, events=moved)
        await events.append(conn, moved)
    return str(job["id"])


@pytest.mark.parametrize("second", ["approve", "cancel", "reject"])
async def test_two_concurrent_actions_record_exactly_one_transition(any_db_env: Env, second: str) -> None:
    env = any_db_env
    env.write(RUNBOOK)
    job_ids = [await waiting_job(env) for _ in range(ROUNDS if second == "cancel" else ROUNDS // 4)]
    async with (
        live_server(env.settings) as url,
        httpx.AsyncClient(base_url=url, timeout=30, headers=await bearer(env.settings)) as http,
    ):
        for job_id in job_ids:
            answers = await asyncio.gather(
                # both people saw the job waiting for approval
                http.post(f"/api/v1/jobs/{job_id}/approve", json={"comment": "first", "expected_status": SEEN}),
                http.post(f"/api/v1/jobs/{job_id}/{second}", json={"comment": "second", "expected_status": SEEN}),
            )
            codes = sorted(a.status_code for a in answers)
            assert codes == [200, 409], [a.text for a in answers]
            refused = next(a for a in answers if a.status_code == 409).json()
            assert refused["status"] in ("running", "failed", "cancelled")
            job = (await http.get(f"/api/v1/jobs/{job_id}")).json()
            outcomes = sorted(entry["outcome"] for entry in job["audit"])
            assert outcomes == ["ok", "refused"]
            async with reading(env.svc.engine) as conn:
                moves = [e.data["status"] for e in await events.read_after(conn, 0, job_id, types=["status"])]
            assert moves[:3] == ["queued", "running", "waiting_for_approval"]
            assert len(moves) == 4 and moves[3] == job["status"]
