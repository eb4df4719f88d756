"""Steering live jobs: approve, reject, approval timeout, pause, resume, cancel, and waiting without a slot.

A real worker runs in the background (not in burst mode) so that people can act while jobs run.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orchestrator import jobs
from orchestrator.errors import InvalidTransition
from orchestrator.states import Action
from tests.integration.conftest import Env, running_worker, step, until

FORM_APPROVAL = """
name: form-approval
inputs:
  wait: {type: number}
steps:
  - {id: open, action: goto, url: "{{ site.url }}/form.html"}
  - {id: type-name, action: fill, selector: "#name", value: Initech}
  - id: ask
    action: approval
    message: "Send the order for {{ captured.who | default('Initech') }}?"
    timeout: "{{ inputs.wait or 120 }}"
  - {id: read-name, action: extract, selector: "#name", save_as: name}
outputs:
  name: "{{ captured.name }}"
"""

NAP = """
name: nap
inputs:
  seconds: {type: number, default: 30}
steps:
  - {id: before, action: set, values: {a: 1}}
  - {id: nap, action: sleep, seconds: "{{ inputs.seconds }}", timeout: 120}
  - {id: after, action: set, values: {b: 2}}
"""

QUICK = """
name: quick
steps:
  - {id: only, action: set, values: {done: true}}
"""


async def settled(env: Env, job_id: str) -> dict[str, Any]:
    """The job once its run has written its final report."""
    async with asyncio.timeout(60):
        while True:
            job = await jobs.get(env.svc, job_id)
            if job["metrics"]["duration_s"] is not None:
                return job
            await asyncio.sleep(0.1)


async def test_approve_goes_on_on_the_same_page(env: Env) -> None:
    env.write(FORM_APPROVAL)
    async with running_worker(env):
        job = await env.create("form-approval")
        waiting = await until(env, job["id"], "waiting_for_approval")
        assert waiting["approval"]["message"] == "Send the order for Initech?"
        assert waiting["approval"]["screenshot_url"].startswith(f"/api/v1/jobs/{job['id']}/artifacts/")
        assert step(waiting, "ask")["status"] == "waiting"
        await jobs.act(env.svc, job["id"], Action.APPROVE, "alice", "fine")
        done = await until(env, job["id"], "completed", "failed")
    assert done["status"] == "completed", done["error"]
    assert done["outputs"] == {"name": "Initech"}  # the field filled before the approval is still filled
    assert done["approval"]["decision"] == "approved"
    assert done["approval"]["by"] == "alice"
    assert [(a["actor"], a["action"], a["comment"]) for a in done["audit"]] == [("alice", "approve", "fine")]


async def test_reject_fails_the_step_and_the_job_with_the_comment(env: Env) -> None:
    env.write(FORM_APPROVAL)
    async with running_worker(env):
        job = await env.create("form-approval")
        await until(env, job["id"], "waiting_for_approval")
        await jobs.act(env.svc, job["id"], Action.REJECT, "bob", "too expensive")
        done = await settled(env, job["id"])
    assert done["status"] == "failed"
    assert done["error"] == {"message": "Rejected by bob: too expensive", "step_id": "ask"}
    assert step(done, "ask")["status"] == "failed"
    assert "too expensive" in step(done, "ask")["error"]
    assert step(done, "read-name")["status"] in ("pending", "cancelled")


async def test_an_approval_nobody_answers_is_rejected_at_its_timeout(env: Env) -> None:
    env.write(FORM_APPROVAL)
    async with running_worker(env):
        job = await env.create("form-approval", {"wait": 1})
        done = await settled(env, job["id"])
    assert done["status"] == "failed"
    assert "No decision within 1 s" in done["error"]["message"]
    assert done["approval"]["decision"] == "rejected"


async def test_cancel_interrupts_a_long_sleep_and_runs_nothing_after_it(env: Env) -> None:
    env.write(NAP)
    async with running_worker(env):
        job = await env.create("nap", {"seconds": 60})
        await until(env, job["id"], "running")
        await asyncio.sleep(0.5)
        await jobs.act(env.svc, job["id"], Action.CANCEL, "carol")
        done = await settled(env, job["id"])
    assert done["status"] == "cancelled"
    assert step(done, "nap")["status"] == "cancelled"
    assert step(done, "after")["status"] == "cancelled"
    assert done["metrics"]["duration_s"] < 60  # the sleep did not run out; it was interrupted


async def test_pause_waits_at_the_next_step_and_resume_goes_on(env: Env) -> None:
    env.write(NAP)
    async with running_worker(env):
        job = await env.create("nap", {"seconds": 1.5})
        await until(env, job["id"], "running")
        await jobs.act(env.svc, job["id"], Action.PAUSE, "dave")
        await asyncio.sleep(3)  # the sleep step ends meanwhile; the next step must not start
        paused = await jobs.get(env.svc, job["id"])
        assert paused["status"] == "paused"
        assert step(paused, "nap")["status"] == "success"
        assert step(paused, "after")["status"] == "pending"
        await jobs.act(env.svc, job["id"], Action.RESUME, "dave")
        done = await until(env, job["id"], "completed", "failed")
    assert done["status"] == "completed"
    assert step(done, "after")["status"] == "success"


async def test_jobs_waiting_for_approval_hold_no_worker_slot(env: Env) -> None:
    env.write(FORM_APPROVAL)
    env.write(QUICK)
    async with running_worker(env, concurrency=1):
        waiting = [await env.create("form-approval") for _ in range(2)]
        for job in waiting:
            await until(env, job["id"], "waiting_for_approval")
        quick = await env.create("quick")
        done = await until(env, quick["id"], "completed")
        assert done["status"] == "completed"
        for job in waiting:
            await jobs.act(env.svc, job["id"], Action.CANCEL, "erin")
            assert (await settled(env, job["id"]))["status"] == "cancelled"


@pytest.mark.parametrize("action", [Action.APPROVE, Action.PAUSE, Action.RESUME])
async def test_an_action_not_allowed_now_is_refused_with_the_allowed_ones(env: Env, action: Action) -> None:
    env.write(QUICK)
    job = await env.create("quick")  # queued: only cancel is allowed
    with pytest.raises(InvalidTransition) as refused:
        await jobs.act(env.svc, job["id"], action, "frank")
    assert refused.value.details == {"status": "queued", "allowed_actions": ["cancel"]}
    audit = (await jobs.get(env.svc, job["id"]))["audit"]
    assert [(a["action"], a["outcome"]) for a in audit] == [(action.value, "refused")]
