"""Named approvers and required approvals under pressure (issue 19, review): two people approving at the
same moment both count, once, and move the job once, on SQLite and PostgreSQL; a `required: N` approval
counts only people (a service token or the command line is nobody's vote), refused and audited; and a
damaged approval record is decided by nobody, without breaking the inbox, the pages or the timeout
sweep for the other jobs."""

from __future__ import annotations

import asyncio
import getpass
import os
import subprocess
import sys
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, select, update

from orchestrator import auth, jobs
from orchestrator.approvals import time_out_due
from orchestrator.db import tables as t
from orchestrator.db.engine import reading, writing
from orchestrator.db.tables import utcnow
from orchestrator.views import iso
from tests.integration.conftest import Env, http_client, live_server, to_waiting

PASSWORD = "a long enough password"
PAY = """
name: pay
steps:
  - {id: ask, action: approval, message: "Pay?", approvers: [role:finance], required: 2}
"""
ANYONE = """
name: anyone
steps:
  - {id: ask, action: approval, message: "Go on?", required: 2}
"""


async def people(env: Env, **roles: str) -> dict[str, str]:
    """Users with these roles, each with a token that acts for them."""
    tokens = {}
    for name, role in roles.items():
        await auth.add_user(env.svc.engine, name, role, PASSWORD)
        tokens[name] = await auth.create_token(env.svc.engine, name, role, created_by="tests", owner=name)
    return tokens


def as_(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def waiting(env: Env, runbook: str, **approval: Any) -> str:
    """A job of `runbook` waiting for approval (no worker needed), with this approval record."""
    job_id = str((await env.create(runbook))["id"])
    await to_waiting(env, job_id)
    asked = {"step_id": "ask", "message": "Pay?", "requested_at": iso(utcnow()), "votes": []} | approval
    async with writing(env.svc.engine) as conn:
        await conn.execute(update(t.jobs).where(t.jobs.c.id == job_id).values(approval=asked))
    return job_id


async def test_two_people_approving_at_once_both_count_once_and_move_the_job_once(any_db_env: Env) -> None:
    env = any_db_env
    env.write(PAY)
    tokens = await people(env, ann="approver,finance", bob="approver,finance")
    job_ids = [await waiting(env, "pay", approvers=["role:finance"], required=2) for _ in range(10)]
    async with live_server(env.settings) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        for job_id in job_ids:
            answers = await asyncio.gather(
                *(
                    http.post(
                        f"/api/v1/jobs/{job_id}/approve",
                        json={"comment": name, "expected_status": "waiting_for_approval"},
                        headers=as_(tokens[name]),
                    )
                    for name in ("ann", "bob")
                )
            )
            assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    for job_id in job_ids:
        job = await jobs.get(env.svc, job_id)
        assert job["status"] == "running"
        assert sorted(v["by"] for v in job["approval"]["votes"]) == ["ann", "bob"]
        assert job["approval"]["decision"] == "approved"
        assert sorted(a["outcome"] for a in job["audit"]) == ["ok", "ok: approval 1 of 2"]
        async with reading(env.svc.engine) as conn:
            moves = (
                await conn.execute(
                    select(func.count())
                    .select_from(t.events)
                    .where(t.events.c.job_id == job_id, t.events.c.type == "status")
                    .where(t.events.c.data["status"].as_string() == "running")
                )
            ).scalar()
        assert moves == 2  # queued -> running (the run), waiting -> running (the decision): once


def cli(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, **env.settings.environment()}
    command = [sys.executable, "-m", "orchestrator.cli", *args]
    return subprocess.run(command, env=environ, capture_output=True, text=True, timeout=60, check=False)


async def test_a_required_approval_counts_only_people(env: Env) -> None:
    """Two votes must be two people: a token that acts for nobody and the command line are nobody (the
    same person could hold several of them), so they are refused, audited, and listed no request."""
    env.write(ANYONE)
    tokens = await people(env, ann="approver", bob="approver")
    job_id = await waiting(env, "anyone", required=2)
    async with http_client(env.settings, role="approver") as service:  # a token that acts for nobody
        assert (await service.post(f"/api/v1/jobs/{job_id}/approve", json={}, headers=as_(tokens["ann"]))).is_success
        refused = await service.post(f"/api/v1/jobs/{job_id}/approve", json={})
        assert refused.status_code == 403
        assert refused.json()["error"] == (
            f"The approval of job {job_id} needs 2 distinct people, and token:approver is no person (a token that "
            "acts for nobody, or the command line): decide as a signed-in user, or with a token that acts for you."
        )
        assert (await service.get("/api/v1/approvals")).json() == {"items": [], "total": 0}
        assert (await service.get("/api/v1/approvals", headers=as_(tokens["bob"]))).json()["total"] == 1
    typed = await asyncio.to_thread(cli, env, "approve", job_id, "--comment", "from the shell")
    assert typed.returncode == 1 and "is no person" in typed.stderr
    job = await jobs.get(env.svc, job_id)
    assert job["status"] == "waiting_for_approval" and [v["by"] for v in job["approval"]["votes"]] == ["ann"]
    assert [(a["actor"], a["outcome"]) for a in job["audit"]] == [
        ("token:ann", "ok: approval 1 of 2"),
        ("token:approver", "refused: not a person"),
        (f"cli:{getpass.getuser()}", "refused: not a person"),
    ]
    async with http_client(env.settings, role=None) as http:
        assert (await http.post(f"/api/v1/jobs/{job_id}/approve", json={}, headers=as_(tokens["bob"]))).is_success
    assert (await jobs.get(env.svc, job_id))["status"] == "running"


DAMAGED: list[dict[str, Any]] = [
    {"step_id": "ask", "message": "Pay?", "requested_at": "x", "approvers": [5], "votes": []},
    {"step_id": "ask", "message": "Pay?", "requested_at": "x", "approvers": "role:finance", "votes": []},
    {"step_id": "ask", "message": "Pay?", "requested_at": "x", "approvers": [], "votes": []},
    {"step_id": "ask", "message": "Pay?", "requested_at": "x", "required": "two", "votes": []},
    {"step_id": "ask", "message": "Pay?", "requested_at": "x", "votes": "ann"},
    {"step_id": "ask", "message": "Pay?", "requested_at": "x", "votes": [{"by": "ann", "at": 5}]},
]


async def test_a_damaged_approval_record_is_decided_by_nobody_and_breaks_nothing_else(env: Env) -> None:
    env.write(PAY)
    tokens = await people(env, bob="approver,finance")
    good = await waiting(env, "pay", approvers=["role:finance"], required=1)
    damaged = []
    for record in DAMAGED:
        job_id = str((await env.create("pay"))["id"])
        await to_waiting(env, job_id)
        async with writing(env.svc.engine) as conn:
            await conn.execute(update(t.jobs).where(t.jobs.c.id == job_id).values(approval=record))
        damaged.append(job_id)
    async with http_client(env.settings, role=None) as http:
        listed = await http.get("/api/v1/approvals", headers=as_(tokens["bob"]))
        assert listed.status_code == 200, listed.text
        assert [i["job_id"] for i in listed.json()["items"]] == [good]
        for path in ("/approvals", "/jobs", f"/jobs/{good}"):
            page = await http.get(path, headers=as_(tokens["bob"]) | {"Accept": "text/html"})
            assert page.status_code == 200, (path, page.text[:500])
        for job_id in damaged:
            refused = await http.post(f"/api/v1/jobs/{job_id}/approve", json={}, headers=as_(tokens["bob"]))
            assert refused.status_code == 409, refused.text
            assert refused.json()["error"] == (
                f"The approval record of job {job_id} cannot be read, so nobody can decide on it: "
                "cancel the job, or let its timeout decide."
            )
            job = await jobs.get(env.svc, job_id)
            assert job["status"] == "waiting_for_approval"
            assert [a["outcome"] for a in job["audit"]] == ["refused: unreadable approval"]
        assert (await http.post(f"/api/v1/jobs/{good}/approve", json={}, headers=as_(tokens["bob"]))).is_success


async def test_a_damaged_approval_record_does_not_stop_the_timeout_sweep_for_other_jobs(env: Env) -> None:
    env.write(PAY)
    asked = iso(utcnow() - timedelta(seconds=30))
    damaged = await waiting(env, "pay", requested_at=asked, timeout_s="soon", on_timeout="reject")
    good = await waiting(env, "pay", requested_at=asked, timeout_s=1, on_timeout="reject")
    while good < damaged:  # the sweep goes in id order: the damaged one comes first
        good = await waiting(env, "pay", requested_at=asked, timeout_s=1, on_timeout="reject")
    assert await time_out_due(env.svc.engine, env.svc.redis) >= 1
    assert (await jobs.get(env.svc, good))["status"] == "failed"
    assert (await jobs.get(env.svc, damaged))["status"] == "waiting_for_approval"
