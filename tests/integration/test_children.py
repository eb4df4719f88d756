"""run_runbook: a child job with its own timeline, waited for without holding a worker slot."""

from __future__ import annotations

import asyncio
import dataclasses

from orchestrator import jobs
from orchestrator.db.engine import reading
from orchestrator.events import read_after
from orchestrator.states import Action
from tests.integration.conftest import Env, http_client, step

CHILD = """
name: child
inputs:
  n: {type: integer, required: true}
  fail: {type: boolean, default: false}
steps:
  - {id: double, action: set, values: {twice: "{{ inputs.n * 2 }}"}}
  - {id: maybe-fail, action: assert, url: "never-there", when: "{{ inputs.fail }}", timeout: 15}
outputs:
  twice: "{{ captured.twice }}"
"""
PARENT = """
name: parent
inputs:
  fail: {type: boolean, default: false}
steps:
  - {id: call, action: run_runbook, runbook: child, inputs: {n: 21, fail: "{{ inputs.fail }}"}, save_as: result}
  - {id: use, action: set, values: {answer: "{{ captured.result.twice }}"}}
outputs:
  answer: "{{ captured.answer }}"
"""


async def test_a_child_job_runs_and_its_outputs_come_back_even_with_one_worker_slot(env: Env) -> None:
    env.settings = dataclasses.replace(env.settings, worker_concurrency=1)  # the parent parks its slot while it waits
    env.write(CHILD)
    job = await env.run(PARENT)
    assert job["status"] == "completed", job["error"]
    assert job["outputs"] == {"answer": 42}
    (child_ref,) = job["children"]
    child = await jobs.get(env.svc, child_ref["id"])
    assert (child["parent_id"], child["runbook"], child["status"], child["source"]) == (
        job["id"],
        "child",
        "completed",
        "runbook",
    )
    assert child["created_by"] == f"job:{job['id']}"
    assert [s["id"] for s in child["steps"]] == ["double", "maybe-fail"]  # its own timeline
    async with reading(env.svc.engine) as conn:
        seen = [e.data["child"]["status"] for e in await read_after(conn, 0, job_id=job["id"]) if e.type == "child"]
    assert seen[0] in ("queued", "running") and seen[-1] == "completed"
    async with http_client(env.settings, role="viewer") as http:
        page = (await http.get(f"/jobs/{job['id']}", headers={"Accept": "text/html"})).text
        child_page = (await http.get(f"/jobs/{child['id']}", headers={"Accept": "text/html"})).text
    assert f'href="/jobs/{child["id"]}"' in page  # the parent links to its child
    assert f'href="/jobs/{job["id"]}"' in child_page  # and the child to its parent


async def test_a_failed_child_fails_the_parent_step_with_its_reason(env: Env) -> None:
    env.write(CHILD)
    job = await env.run(PARENT, {"fail": True})
    assert job["status"] == "failed"
    error = step(job, "call")["error"]
    assert error.startswith(f"Child job {job['children'][0]['id']} (child) failed:")
    assert "never-there" in error
    assert step(job, "use")["status"] == "pending"


async def test_a_runbook_that_calls_itself_is_stopped_with_the_cycle_named(env: Env) -> None:
    job = await env.run("""
        name: loop-a
        steps:
          - {id: again, action: run_runbook, runbook: loop-a}
    """)
    assert job["status"] == "failed"
    assert step(job, "again")["error"] == "run_runbook would run loop-a inside itself: loop-a → loop-a."
    assert job["children"] == []


async def test_runbooks_call_runbooks_at_most_five_deep(env: Env) -> None:
    for level in range(1, 7):
        call = f"  - {{id: down, action: run_runbook, runbook: level-{level + 1}}}\n" if level < 6 else ""
        env.write(f"name: level-{level}\nsteps:\n{call}  - {{id: here, action: set, values: {{l: {level}}}}}\n")
    job = await env.create("level-1")
    await env.work()
    chain = [await jobs.get(env.svc, job["id"])]
    while chain[-1]["children"]:
        chain.append(await jobs.get(env.svc, chain[-1]["children"][0]["id"]))
    assert [j["runbook"] for j in chain] == [f"level-{n}" for n in range(1, 6)]
    assert (
        "at most 5 deep: level-1 → level-2 → level-3 → level-4 → level-5 → level-6" in step(chain[-1], "down")["error"]
    )
    assert [j["status"] for j in chain] == ["failed"] * 5


async def test_cancelling_the_parent_cancels_the_child(env: Env) -> None:
    env.write("""
name: slow-child
steps:
  - {id: nap, action: sleep, seconds: 30, timeout: 60}
""")
    parent = await env.create(
        env.write("name: waits\nsteps:\n  - {id: call, action: run_runbook, runbook: slow-child}\n")
    )
    work = asyncio.create_task(env.work())
    try:
        for _ in range(200):
            current = await jobs.get(env.svc, parent["id"])
            if current["children"] and current["children"][0]["status"] == "running":
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the child never started")
        await jobs.act(env.svc, parent["id"], Action.CANCEL, "tests", "not needed")
    finally:
        await asyncio.wait_for(work, 60)
    parent_job = await jobs.get(env.svc, parent["id"])
    child = await jobs.get(env.svc, parent_job["children"][0]["id"])
    assert (parent_job["status"], child["status"]) == ("cancelled", "cancelled")
    assert child["audit"][0]["comment"] == f"Its parent job {parent['id']} was cancelled."
    assert step(child, "nap")["status"] == "cancelled"
