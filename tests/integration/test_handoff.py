"""The `handoff` step (issue 20, first part): the job pauses on its page with the step's message as the
reason, holding no worker slot; it goes on by itself when `until` holds, on Resume, and fails the step
when nobody finished in time."""

from __future__ import annotations

from orchestrator import jobs
from orchestrator.states import Action
from tests.integration.conftest import Env, http_client, running_worker, step, until

LATER = """
name: later
steps:
  - {id: open, action: goto, url: "{{ site.url }}/later.html?after=AFTER"}
  - id: person
    action: handoff
    message: "Enter the code sent to the phone"
    timeout: 60
    until: {selector: "#dashboard"}
  - {id: read, action: extract, selector: "#dashboard", save_as: seen}
"""


async def test_a_handoff_pauses_with_its_message_and_goes_on_when_the_page_shows_it_done(env: Env) -> None:
    env.write(LATER.replace("AFTER", "2500"))
    async with running_worker(env, concurrency=1):
        job = await env.create("later")
        paused = await until(env, job["id"], "paused")
        assert paused["handoff"]["message"] == "Enter the code sent to the phone"
        assert paused["handoff"]["until"] == {"selector": "#dashboard"}
        assert step(paused, "person")["status"] == "waiting"
        async with http_client(env.settings, role="operator") as http:
            page = (await http.get(f"/jobs/{job['id']}", headers={"Accept": "text/html"})).text
        assert 'data-role="handoff"' in page and "Enter the code sent to the phone" in page
        other = await env.create("later")  # the waiting job holds no slot: another runs meanwhile
        await until(env, other["id"], "paused")
        done = await until(env, job["id"], "completed")
    assert step(done, "person")["status"] == "success"
    assert step(done, "read")["captured"] == {"seen": "Dashboard"}
    assert done["handoff"]["outcome"] == "done" and done["handoff"]["done_at"]
    assert [e["action"] for e in done["audit"]] == []  # nobody acted: the page said it was done


MANUAL = """
name: manual
steps:
  - {id: open, action: goto, url: "{{ site.url }}/later.html"}
  - {id: person, action: handoff, message: "Accept the new terms, then press Resume"}
  - {id: after, action: set, values: {went_on: true}}
"""


async def test_resume_ends_a_handoff_and_a_timeout_fails_the_step(env: Env) -> None:
    env.write(MANUAL)
    async with running_worker(env, concurrency=1):
        job = await env.create("manual")
        paused = await until(env, job["id"], "paused")
        assert paused["handoff"]["timeout_s"] == 900  # the default
        await jobs.act(env.svc, job["id"], Action.RESUME, "olga", "accepted them")
        resumed = await until(env, job["id"], "completed", "failed")
        assert resumed["status"] == "completed", resumed["error"]
        assert step(resumed, "person")["status"] == "success"
        assert resumed["handoff"]["outcome"] == "resumed"
        assert [(e["actor"], e["action"]) for e in resumed["audit"]] == [("olga", "resume")]
        env.write(LATER.replace("AFTER", "-1").replace("timeout: 60", "timeout: 1"))  # never shown done
        late = await env.create("later")
        failed = await until(env, late["id"], "failed")
    assert step(failed, "person")["status"] == "failed"
    assert "Nobody finished the handoff within 1 s: Enter the code sent to the phone" in failed["error"]["message"]
    assert failed["handoff"]["outcome"] == "timed out"
