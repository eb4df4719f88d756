"""Re-running a job: same inputs (secrets too), same locked runbook version, even after the file changed."""

from __future__ import annotations

import secrets

from orchestrator import jobs
from tests.integration.conftest import Env, http_client
from tests.support import SITE_DIR

RUNBOOK = """
name: echo
inputs:
  word: {type: string, required: true}
  token: {type: string, secret: true}
steps:
  - {id: say, action: set, values: {said: "{{ inputs.word }}-{{ inputs.token }}"}}
outputs:
  said: "{{ captured.said }}"
"""


async def test_rerun_runs_the_same_inputs_on_the_same_version(env: Env) -> None:
    first = await env.create(env.write(RUNBOOK), {"word": "hello", "token": "s3cret"})
    await env.work()
    env.write(RUNBOOK.replace("{{ inputs.word }}-", "changed-"))  # a new version meanwhile
    async with http_client(env.settings) as http:
        answer = await http.post(f"/api/v1/jobs/{first['id']}/rerun")
    assert answer.status_code == 201, answer.text
    again = answer.json()
    assert again["id"] != first["id"]
    assert again["source"] == "rerun"
    assert again["runbook_version"] == first["runbook_version"] == 1
    assert again["inputs"] == {"word": "hello", "token": "********"}
    await env.work()
    done = await jobs.get(env.svc, again["id"])
    assert done["status"] == "completed"
    # the old version ran, and the secret came along (outputs mask it, as everywhere)
    assert done["outputs"] == {"said": "hello-********"}


STEPS = """
name: steps
inputs:
  page: {type: string, required: true}
settings: {retries: 0}
steps:
  - {id: s1, action: set, values: {a: 20}}
  - {id: s2, action: set, values: {b: "{{ captured.a + 1 }}"}}
  - {id: s3, action: goto, url: "{{ site.url }}/{{ inputs.page }}", timeout: 10}
  - {id: s4, action: set, values: {c: "{{ captured.b * 2 }}"}}
outputs:
  c: "{{ captured.c }}"
"""


async def test_rerun_from_the_failed_step_keeps_the_values_captured_before_it(env: Env) -> None:
    page = SITE_DIR / f"later-{secrets.token_hex(4)}.html"
    first = await env.create(env.write(STEPS), {"page": page.name})
    await env.work()
    failed = await jobs.get(env.svc, first["id"])
    assert failed["status"] == "failed" and failed["error"]["step_id"] == "s3"
    page.write_text("<!doctype html><title>here now</title>")
    try:
        async with http_client(env.settings) as http:
            bad = await http.post(f"/api/v1/jobs/{first['id']}/rerun?from_step=s9")
            assert bad.status_code == 422 and "s1, s2, s3, s4" in bad.json()["fields"]["from_step"]
            answer = await http.post(f"/api/v1/jobs/{first['id']}/rerun?from_step=s3")
        assert answer.status_code == 201, answer.text
        await env.work()
    finally:
        page.unlink()
    done = await jobs.get(env.svc, answer.json()["id"])
    assert done["status"] == "completed", done["error"]
    assert done["outputs"] == {"c": 42}
    assert [(s["id"], s["status"]) for s in done["steps"]] == [
        ("s1", "success"),
        ("s2", "success"),
        ("s3", "success"),
        ("s4", "success"),
    ]
    assert done["steps"][0]["started_at"] is None  # carried over, not run again
    assert done["data"]["from_step"] == "s3"


DEDUPE = """
name: once-at-a-time
inputs:
  account: {type: string, required: true}
  pin: {type: string, secret: true}
settings: {dedupe: inputs}
steps:
  - {id: one, action: set, values: {a: 1}}
"""


async def test_dedupe_refuses_a_job_with_the_inputs_of_a_queued_one(env: Env) -> None:
    env.write(DEDUPE)
    async with http_client(env.settings, role="operator") as http:
        first = await http.post("/api/v1/runbooks/once-at-a-time/jobs", json={"inputs": {"account": "A", "pin": "1"}})
        assert first.status_code == 201
        same = await http.post("/api/v1/runbooks/once-at-a-time/jobs", json={"inputs": {"account": "A", "pin": "1"}})
        assert same.status_code == 409
        assert first.json()["id"] in same.json()["error"] and same.json()["job_id"] == first.json()["id"]
        other_pin = await http.post(
            "/api/v1/runbooks/once-at-a-time/jobs", json={"inputs": {"account": "A", "pin": "2"}}
        )
        assert other_pin.status_code == 201  # secrets count, without being stored in the clear
        await env.work()
        after = await http.post("/api/v1/runbooks/once-at-a-time/jobs", json={"inputs": {"account": "A", "pin": "1"}})
        assert after.status_code == 201  # the first one finished
