"""Self-approval compares people, not credentials; idempotency keys belong to their caller; every path
that creates jobs counts against the job rate (issue 16, points 2, 4 and 13)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from typing import Any

import httpx

from orchestrator import auth, jobs, scheduler
from orchestrator.db.tables import utcnow
from orchestrator.states import Action
from tests.integration.conftest import Env, http_client, running_worker, to_waiting, until

FOUR_EYES = """
name: four-eyes
settings: {self_approval: false}
steps:
  - {id: ask, action: approval, message: "Pay?"}
"""
PARENT = """
name: parent
steps:
  - {id: call, action: run_runbook, runbook: four-eyes, inputs: {}}
"""


async def people(env: Env) -> dict[str, str]:
    """alice and bob, each with two admin tokens that act for them (a laptop and a phone, say)."""
    tokens = {}
    for name in ("alice", "bob"):
        await auth.add_user(env.svc.engine, name, "admin", "a long enough password")
        for device in ("laptop", "phone"):
            tokens[f"{name}-{device}"] = await auth.create_token(
                env.svc.engine, f"{name}-{device}", "admin", created_by="tests", owner=name
            )
    return tokens


def as_(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


EVERY_MINUTE = {"runbook": "four-eyes", "cron": "* * * * *", "catch_up": "latest"}


async def approve(http: httpx.AsyncClient, token: str, job_id: str) -> int:
    return (await http.post(f"/api/v1/jobs/{job_id}/approve", json={}, headers=as_(token))).status_code


async def test_nobody_approves_their_own_job_through_another_token_a_webhook_or_a_schedule(env: Env) -> None:
    env.write(FOUR_EYES)
    tokens = await people(env)
    laptop, phone = tokens["alice-laptop"], tokens["alice-phone"]
    async with http_client(env.settings, role=None) as http:
        direct = (await http.post("/api/v1/runbooks/four-eyes/jobs", json={}, headers=as_(laptop))).json()
        hook = (await http.post("/api/v1/runbooks/four-eyes/hooks", headers=as_(laptop))).json()
        made = await http.post("/api/v1/schedules", json=EVERY_MINUTE, headers=as_(laptop))
        assert made.status_code == 201, made.text
        via_hook = (await http.post("/api/v1/hooks", headers=as_(hook["token"]))).json()
        assert await scheduler.tick(env.svc, utcnow() + timedelta(seconds=61)) == 1
        [scheduled] = (await http.get("/api/v1/jobs?source=schedule", headers=as_(laptop))).json()["items"]
        started = [direct["id"], via_hook["id"], scheduled["id"]]
        for job_id in started:
            assert (await jobs.get(env.svc, job_id))["owner"] == "alice"
            await to_waiting(env, job_id)
            assert await approve(http, phone, job_id) == 403  # the same person, whatever the credential
        assert [await approve(http, tokens["bob-laptop"], job_id) for job_id in started] == [200, 200, 200]


async def child_waiting(env: Env, parent_id: str) -> dict[str, Any]:
    async with asyncio.timeout(60):
        while not (found := (await jobs.get(env.svc, parent_id))["children"]):
            await asyncio.sleep(0.1)
    return await until(env, found[0]["id"], "waiting_for_approval")


async def test_a_child_job_is_owned_by_its_parents_owner(env: Env) -> None:
    env.write(FOUR_EYES)
    env.write(PARENT)
    tokens = await people(env)
    alice = tokens["alice-laptop"]
    async with http_client(env.settings, role=None) as http, running_worker(env):
        parent = (await http.post("/api/v1/runbooks/parent/jobs", json={}, headers=as_(alice))).json()
        child = await child_waiting(env, parent["id"])
        assert child["owner"] == "alice" and child["created_by"] == f"job:{parent['id']}"
        assert await approve(http, alice, child["id"]) == 403
        assert await approve(http, tokens["bob-phone"], child["id"]) == 200
        assert (await until(env, parent["id"], "completed", "failed"))["status"] == "completed"


async def test_an_idempotency_key_belongs_to_its_caller(env: Env) -> None:
    env.write(FOUR_EYES)
    env.write(PARENT)
    tokens = await people(env)
    alice, bob = as_(tokens["alice-laptop"]), as_(tokens["bob-laptop"])
    keyed = {"idempotency_key": "order-1"}
    async with http_client(env.settings, role=None) as http:
        mine = await http.post("/api/v1/runbooks/four-eyes/jobs", json=keyed, headers=alice)
        again = await http.post("/api/v1/runbooks/four-eyes/jobs", json=keyed, headers=alice)
        assert (mine.status_code, again.status_code) == (201, 200) and again.json()["id"] == mine.json()["id"]
        theirs = await http.post("/api/v1/runbooks/four-eyes/jobs", json=keyed, headers=bob)
        assert theirs.status_code == 201 and theirs.json()["id"] != mine.json()["id"]  # not alice's job
        hook = (await http.post("/api/v1/runbooks/four-eyes/hooks", headers=bob)).json()
        guessed = await http.post("/api/v1/hooks", headers={**as_(hook["token"]), "Idempotency-Key": "order-1"})
        assert guessed.status_code == 201 and guessed.json()["id"] not in (mine.json()["id"], theirs.json()["id"])

        # nobody can plant the child a parent job will adopt
        parent = (await http.post("/api/v1/runbooks/parent/jobs", json={}, headers=alice)).json()
        planted = {"idempotency_key": f"child-of:{parent['id']}:call"}
        forged = await http.post("/api/v1/runbooks/four-eyes/jobs", json=planted, headers=bob)
        assert forged.status_code == 201
        async with running_worker(env):
            child = await child_waiting(env, parent["id"])
            assert child["id"] != forged.json()["id"] and child["parent_id"] == parent["id"]
            await jobs.act(env.svc, parent["id"], Action.CANCEL, "tests")


async def test_reruns_schedules_and_reports_count_against_the_job_rate(env: Env) -> None:
    env.write(FOUR_EYES)
    tokens = await people(env)
    env.settings = dataclasses.replace(env.settings, job_rate=2)
    svc = dataclasses.replace(env.svc, settings=env.settings)  # the scheduler's view of the same settings
    alice, bob = as_(tokens["alice-laptop"]), as_(tokens["bob-laptop"])
    report = {"process": "bot", "source": "uipath", "external_id": "R-1", "status": "running"}
    async with http_client(env.settings, role=None) as http:
        first = (await http.post("/api/v1/runbooks/four-eyes/jobs", json={}, headers=alice)).json()
        assert (await http.post(f"/api/v1/jobs/{first['id']}/rerun", headers=alice)).status_code == 201
        refused = await http.post(f"/api/v1/jobs/{first['id']}/rerun", headers=alice)
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert (await http.post("/api/v1/schedules", json=EVERY_MINUTE, headers=alice)).status_code == 201
        assert await scheduler.tick(svc, utcnow() + timedelta(seconds=61)) == 0  # alice's budget is spent
        assert (await http.post("/api/v1/ingest/jobs", json=report, headers=alice)).status_code == 429
        assert (await http.post("/api/v1/ingest/jobs", json=report, headers=bob)).status_code == 201  # bob's own
