"""No secret leaves a run in any form: approval messages, template errors, outputs' errors, URL-encoded
and overlapping secrets are all masked, in the job, its events and its files (issue 16, point 8)."""

from __future__ import annotations

import json
from urllib.parse import quote, quote_plus

from orchestrator import events, jobs
from orchestrator.db.engine import reading
from orchestrator.states import Action
from tests.integration.conftest import Env, running_worker, step, until

LEAKY = """
name: leaky
inputs:
  pin: {type: string, secret: true}
  short: {type: string, secret: true}
steps:
  - {id: rates, action: set, values: {rates: {EUR: 1}}}
  - {id: ask, action: approval, message: "Pay with PIN {{ inputs.pin }} (card {{ inputs.short }})?", timeout: 120}
  - id: visit
    action: goto
    url: "{{ site.url }}/missing.html?code={{ inputs.pin | urlencode }}&also={{ inputs.pin }}"
    continue_on_error: true
  - {id: echo, action: set, values: {said: "{{ inputs.pin }}!"}}
  - {id: rate, action: set, values: {r: "{{ captured.rates[inputs.pin] }}"}}
outputs:
  total: "{{ captured.missing[inputs.pin] }}"
"""

PIN = "p@ss w/rd-4711"  # a secret whose URL-encoded forms differ from itself
SHORT = "p@ss"  # a secret inside the other: the longer one must be masked whole


async def test_no_form_of_a_secret_reaches_the_job_its_events_or_the_approval(env: Env) -> None:
    env.write(LEAKY)
    async with running_worker(env):
        job = await env.create("leaky", {"pin": PIN, "short": SHORT})
        waiting = await until(env, job["id"], "waiting_for_approval")
        assert waiting["approval"]["message"] == "Pay with PIN ******** (card ********)?"
        await jobs.act(env.svc, job["id"], Action.APPROVE, "bob")
        done = await until(env, job["id"], "failed", "completed")
    async with reading(env.svc.engine) as conn:
        stored = await events.read_after(conn, 0, job_id=job["id"], limit=10_000)
    text = json.dumps([done, [e.data for e in stored]], ensure_ascii=False)
    for form in (PIN, quote(PIN, safe=""), quote(PIN), quote_plus(PIN), SHORT, "w/rd-4711", "-4711"):
        assert form not in text, f"{form!r} leaked: {text[text.find(form) - 200 : text.find(form) + 100]}"
    assert step(done, "visit")["status"] == "failed" and "********" in step(done, "visit")["error"]
    assert step(done, "echo")["captured"] == {"said": "********!"}
    assert done["status"] == "failed" and done["error"]["step_id"] == "rate"
    assert "********" in done["error"]["message"]
