"""Re-running a job: same inputs (secrets too), same locked runbook version, even after the file changed."""

from __future__ import annotations

from orchestrator import jobs
from tests.integration.conftest import Env, http_client

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
