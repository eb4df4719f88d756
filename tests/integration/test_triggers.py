"""Job-completion triggers: a runbook's `triggers` start other runbooks when its jobs end."""

from __future__ import annotations

from orchestrator import jobs
from orchestrator.db.engine import reading
from orchestrator.events import read_after
from tests.integration.conftest import Env

NEXT = """
name: next-step
inputs:
  total: {type: integer, required: true}
  from_job: {type: string}
steps:
  - {id: got, action: set, values: {seen: "{{ inputs.total }}"}}
outputs:
  seen: "{{ captured.seen }}"
"""
FIRST = """
name: first-step
inputs:
  fail: {type: boolean, default: false}
steps:
  - {id: count, action: set, values: {total: 7}}
  - {id: maybe, action: assert, url: "never-there", when: "{{ inputs.fail }}", timeout: 1}
outputs:
  total: "{{ captured.total }}"
triggers:
  - {on: completed, runbook: next-step, inputs: {total: "{{ outputs.total }}", from_job: "{{ job.id }}"}}
  - {on: failed, runbook: next-step, inputs: {total: 0}}
  - {on: finished, runbook: next-step, inputs: {total: "{{ 'x' }}"}}
"""


async def test_a_completed_job_starts_the_runbooks_its_triggers_name(env: Env) -> None:
    env.write(NEXT)
    job = await env.create(env.write(FIRST))
    await env.work()  # runs the first job, then the jobs it triggered
    done = await jobs.get(env.svc, job["id"])
    assert done["status"] == "completed"
    listed = (await jobs.list_jobs(env.svc, jobs.JobFilter(runbook="next-step"))).get("items")
    assert len(listed) == 1  # the 'failed' trigger did not fire; the 'finished' one was refused (below)
    started = await jobs.get(env.svc, listed[0]["id"])
    assert (started["source"], started["created_by"], started["data"]) == (
        "trigger",
        f"job:{job['id']}",
        {"triggered_by": job["id"]},
    )
    assert started["inputs"] == {"total": 7, "from_job": job["id"]}
    assert started["status"] == "completed" and started["outputs"] == {"seen": 7}
    async with reading(env.svc.engine) as conn:
        logs = [e.data["message"] for e in await read_after(conn, 0, job_id=job["id"]) if e.type == "log"]
    assert f"Trigger 1 started job {started['id']} of next-step." in logs
    assert "Trigger 3 could not start next-step: total: must be an integer" in logs


async def test_a_failed_job_fires_only_its_failed_and_finished_triggers(env: Env) -> None:
    env.write(NEXT)
    job = await env.create(env.write(FIRST), {"fail": True})
    await env.work()
    assert (await jobs.get(env.svc, job["id"]))["status"] == "failed"
    listed = (await jobs.list_jobs(env.svc, jobs.JobFilter(runbook="next-step")))["items"]
    # the job list leaves inputs out (issue 16: they may be large); the job itself has them
    started = [await jobs.get(env.svc, i["id"]) for i in listed]
    assert [j["inputs"]["total"] for j in started] == [0]  # the 'failed' trigger only
