"""The `handoff` step (issue 20, first part): the job pauses on its page with the step's message as the
reason, holding no worker slot; it goes on by itself when `until` holds, on Resume, and fails the step
when nobody finished in time."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from orchestrator import auth, channels, jobs
from orchestrator.db import tables as t
from orchestrator.db.engine import reading
from orchestrator.notify.notifier import Notifier
from orchestrator.states import Action
from tests.integration.conftest import Env, http_client, running_worker, step, until
from tests.receivers import http_receiver

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


async def test_an_operator_takes_the_wheel_types_the_code_and_the_job_goes_on(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    env.write(LATER.replace("AFTER", "-1"))
    async with running_worker(env, concurrency=1), http_client(env.settings, role="operator") as http:
        olga = {"Authorization": f"Bearer {await auth.create_token(env.svc.engine, 'olga', 'operator', 'tests')}"}
        viewer = {"Authorization": f"Bearer {await auth.create_token(env.svc.engine, 'vic', 'viewer', 'tests')}"}
        job = await env.create("later")
        control_url, input_url = f"/api/v1/jobs/{job['id']}/control", f"/api/v1/jobs/{job['id']}/input"
        too_early = await http.post(control_url)
        assert too_early.status_code == 409  # queued or running: nothing to take yet
        await until(env, job["id"], "paused")
        assert (await http.post(control_url, headers=viewer)).status_code == 403
        assert (await http.post(input_url, json={"type": "key", "key": "Enter"}, headers=viewer)).status_code == 403
        nobody = await http.post(input_url, json={"type": "key", "key": "Enter"})
        assert nobody.status_code == 409 and "take control first" in nobody.json()["error"]
        taken = await http.post(control_url)
        assert taken.status_code == 200 and taken.json()["holder"] == "token:operator"
        assert (await http.post(control_url)).status_code == 200  # again: still theirs
        second = await http.post(control_url, headers=olga)
        assert second.status_code == 409 and "token:operator holds control" in second.json()["error"]
        bad = await http.post(input_url, json={"type": "key", "key": "rm -rf /"})
        assert bad.status_code == 422 and "key" in str(bad.json()["fields"])
        for event in (
            {"type": "click", "x": 150, "y": 115},
            {"type": "type", "text": "4711"},
            {"type": "key", "key": "Enter"},
        ):
            sent = await http.post(input_url, json=event)
            assert sent.status_code == 202, sent.text
        done = await until(env, job["id"], "completed", "failed")
        assert done["status"] == "completed", done["error"]
        late = await http.post(input_url, json={"type": "key", "key": "Enter"})
        assert late.status_code == 409  # the job is not waiting any more
    assert step(done, "read")["captured"] == {"seen": "Dashboard"}
    audit = [(e["actor"], e["action"]) for e in done["audit"]]
    assert audit == [("token:operator", "take_control"), ("token:operator", "give_back")]
    given = done["audit"][1]["comment"]
    assert "the job went on; held" in given and "3 input(s)" in given
    assert f"page before: {env.site_url}/later.html?after=-1" in given and "after: " in given
    async with reading(env.svc.engine) as conn:
        stored = [str(v) for row in (await conn.execute(select(t.events.c.data))).all() for v in row]
        stored += [str(r) for r in (await conn.execute(select(t.audit))).all()]
        stored += [str(r) for r in (await conn.execute(select(t.jobs))).all()]
    assert not [s for s in stored if "4711" in s]  # what was typed is nowhere
    assert not [r for r in caplog.records if "4711" in r.getMessage()]


async def test_a_handoff_tells_the_runbooks_channels_that_a_person_is_needed(env: Env) -> None:
    with http_receiver() as hook:
        await channels.add(
            env.svc.engine, channels.Sealer(env.settings.secret_key), "ops", "webhook", f"{hook.url}/in", None, "tests"
        )
        env.write(MANUAL.replace("steps:", "notify:\n  - {on: [handoff_requested], channel: ops}\nsteps:", 1))
        async with running_worker(env, concurrency=1):
            job = await env.create("manual")
            await until(env, job["id"], "paused")
            notifier = Notifier(env.svc)
            await notifier.step()
            await notifier.step()  # read again: still one message
            await jobs.act(env.svc, job["id"], Action.RESUME, "olga")
            await until(env, job["id"], "completed")
            await notifier.step()
    [post] = hook.posts
    body = post.json()
    assert body["event"] == "handoff_requested" and body["subject"] == f"A person is needed: manual (job {job['id']})"
    assert "Accept the new terms, then press Resume" in body["text"]
