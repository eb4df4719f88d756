"""An approval is a gate: no re-run, record re-run or takeover after a lost worker steps past one, and
its timeout holds when the worker that asked is gone (issue 16, points 1 and 3)."""

from __future__ import annotations

import asyncio
import html
import os
import re
import signal
from typing import Any

from orchestrator import jobs
from orchestrator.reaper import Reaper
from orchestrator.states import Action
from tests.integration.conftest import Env, http_client, orch_process, running_worker, step, until
from tests.support import SEEN

PAY = """
name: pay
inputs:
  invoice: {type: string, required: true}
steps:
  - {id: open, action: goto, url: "{{ site.url }}/form.html"}
  - {id: ask, action: approval, message: "Pay invoice {{ inputs.invoice }}?"}
  - {id: amount, action: fill, selector: "#name", value: "{{ inputs.invoice }}"}
  - {id: read, action: extract, selector: "#name", save_as: name}
  - {id: pay, action: goto, url: "{{ site.url }}/data.html?paid={{ inputs.invoice }}"}
"""


async def settled(env: Env, job_id: str) -> dict[str, Any]:
    """The job once its run has written its final report (a person may end a job before its run has)."""
    async with asyncio.timeout(60):
        while (job := await jobs.get(env.svc, job_id))["metrics"]["duration_s"] is None:
            await asyncio.sleep(0.1)
    return job


def paid(invoice: str) -> int:
    """How often the target system was asked to pay this invoice."""
    return sum(1 for path in SEEN if path.endswith(f"?paid={invoice}"))


async def rerun(env: Env, job_id: str, query: str) -> dict[str, Any]:
    async with http_client(env.settings, role="operator") as http:
        answer = await http.post(f"/api/v1/jobs/{job_id}/rerun?{query}")
    assert answer.status_code == 201, answer.text
    return answer.json()


async def test_a_rerun_from_past_a_rejected_approval_asks_it_again(env: Env) -> None:
    env.write(PAY)
    async with running_worker(env):
        first = await env.create("pay", {"invoice": "INV-7"})
        await until(env, first["id"], "waiting_for_approval")
        await jobs.act(env.svc, first["id"], Action.REJECT, "bob", "wrong supplier")
        await until(env, first["id"], "failed")

        again = await rerun(env, first["id"], "from_step=pay")
        waiting = await until(env, again["id"], "waiting_for_approval", "completed", "failed")
        assert waiting["status"] == "waiting_for_approval"  # not paid behind the approver's back
        assert paid("INV-7") == 0
        approval = waiting["approval"]
        assert approval["step_id"] == "ask" and approval["message"] == "Pay invoice INV-7?"
        assert approval["rerun_of"] == first["id"]
        assert approval["earlier"]["decision"] == "rejected"
        assert approval["earlier"]["by"] == "bob" and approval["earlier"]["comment"] == "wrong supplier"
        assert step(waiting, "open")["status"] == "success" and step(waiting, "open")["started_at"] is None
        async with http_client(env.settings, role="approver") as http:
            page = (await http.get(f"/jobs/{again['id']}", headers={"Accept": "text/html"})).text
        panel = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())
        assert f"This is a re-run of job {first['id']} : it asks again." in panel
        assert "Last time: rejected by bob" in panel and "“wrong supplier”" in panel

        await jobs.act(env.svc, again["id"], Action.REJECT, "bob", "still wrong")
        await until(env, again["id"], "failed")
        assert paid("INV-7") == 0

        third = await rerun(env, again["id"], "from_step=read")
        await until(env, third["id"], "waiting_for_approval")
        assert paid("INV-7") == 0
        await jobs.act(env.svc, third["id"], Action.APPROVE, "carol", "checked")
        done = await until(env, third["id"], "completed", "failed")
    assert done["status"] == "completed", done["error"]
    assert paid("INV-7") == 1
    # the carried-over form step after the approval was applied to the page again before `read` ran
    assert step(done, "amount")["started_at"] is None
    assert step(done, "read")["captured"] == {"name": "INV-7"}


async def test_a_rerun_of_a_job_still_waiting_cannot_skip_its_approval(env: Env) -> None:
    env.write(PAY)
    async with running_worker(env):
        first = await env.create("pay", {"invoice": "INV-8"})
        await until(env, first["id"], "waiting_for_approval")
        again = await rerun(env, first["id"], "from_step=read")
        waiting = await until(env, again["id"], "waiting_for_approval", "completed", "failed")
        assert waiting["status"] == "waiting_for_approval"
        assert "earlier" not in waiting["approval"]  # the first job has not been decided
        assert paid("INV-8") == 0
        for job_id in (first["id"], again["id"]):
            await jobs.act(env.svc, job_id, Action.CANCEL, "bob")


LOOP = """
name: pay-many
inputs:
  invoices: {type: records}
steps:
  - {id: ask, action: approval, message: "Pay {{ inputs.invoices | length }} invoices?"}
  - id: each
    action: for_each
    items: "{{ inputs.invoices }}"
    record_id: "{{ record.no }}"
    steps:
      - {id: check, action: set, values: {ok: "{{ record.ok if record.ok else record.no_such_field }}"}}
"""


async def test_a_rerun_of_failed_records_asks_the_approval_before_the_loop_again(env: Env) -> None:
    env.write(LOOP)
    records = [{"no": "A", "ok": True}, {"no": "B", "ok": False}]
    async with running_worker(env):
        first = await env.create("pay-many", {"invoices": records})
        await until(env, first["id"], "waiting_for_approval")
        await jobs.act(env.svc, first["id"], Action.APPROVE, "bob", "go")
        done = await until(env, first["id"], "completed", "failed")
        assert done["record_counts"]["failed"] == 1, done
        again = await rerun(env, first["id"], "records=failed")
        waiting = await until(env, again["id"], "waiting_for_approval", "completed", "failed")
        assert waiting["status"] == "waiting_for_approval"
        assert waiting["approval"]["earlier"]["decision"] == "approved"
        await jobs.act(env.svc, again["id"], Action.CANCEL, "bob")


async def test_a_takeover_after_a_lost_worker_never_passes_an_undecided_approval(env: Env) -> None:
    job = await env.create(env.write(PAY), {"invoice": "INV-9"})
    with orch_process(env, "worker") as first:
        await until(env, job["id"], "waiting_for_approval")
        os.killpg(first.pid, signal.SIGKILL)  # the worker and its browser, while the job waits
        first.wait()
    with orch_process(env, "worker"):
        await asyncio.sleep(8)  # long enough for the new worker's reaper to sweep several times
        assert (await jobs.get(env.svc, job["id"]))["status"] == "waiting_for_approval"
        assert paid("INV-9") == 0
        await jobs.act(env.svc, job["id"], Action.APPROVE, "bob", "ok")
        done = await until(env, job["id"], "completed", "failed", seconds=90)
    assert done["status"] == "completed", done["error"]
    assert paid("INV-9") == 1
    assert [a["action"] for a in done["audit"]] == ["approve"]


TIMED = """
name: timed
steps:
  - {id: ask, action: approval, message: "Go on?", timeout: 1}
  - {id: after, action: set, values: {went_on: true}}
"""


async def test_an_approval_timeout_holds_when_the_asking_worker_is_gone(env: Env) -> None:
    job = await env.create(env.write(TIMED))
    with orch_process(env, "worker") as first:
        await until(env, job["id"], "waiting_for_approval")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    reaper = Reaper(env.svc.engine, env.svc.redis)  # what the scheduler and every worker run
    async with asyncio.timeout(30):
        while (await jobs.get(env.svc, job["id"]))["status"] == "waiting_for_approval":
            await reaper.sweep()
            await asyncio.sleep(0.5)
    done = await jobs.get(env.svc, job["id"])
    assert done["status"] == "failed"
    assert done["error"]["message"] == "No decision within 1 s: rejected automatically."
    assert done["error"]["step_id"] == "ask"
    assert done["approval"]["by"] == "timeout"
    assert [(s["id"], s["status"]) for s in done["steps"]] == [("ask", "failed"), ("after", "cancelled")]


REJECTABLE = """
name: rejectable
inputs:
  invoices: {type: records}
steps:
  - {id: ask, action: approval, message: "Go on?", continue_on_error: true}
  - {id: after, action: goto, url: "{{ site.url }}/data.html?after-reject={{ job.id }}"}
  - id: each
    action: for_each
    items: "{{ inputs.invoices }}"
    record_id: "{{ record.no }}"
    steps:
      - {id: before, action: goto, url: "{{ site.url }}/data.html?record={{ record.no }}-{{ job.id }}"}
      - {id: ask-each, action: approval, message: "Pay {{ record.no }}?"}
"""


async def test_a_rejection_ends_the_job_whatever_continue_on_error_or_a_loop_say(env: Env) -> None:
    env.write(REJECTABLE)
    async with running_worker(env):
        first = await env.create("rejectable", {"invoices": [{"no": "A"}, {"no": "B"}]})
        await until(env, first["id"], "waiting_for_approval")
        await jobs.act(env.svc, first["id"], Action.REJECT, "bob", "no")
        done = await settled(env, first["id"])
        assert done["status"] == "failed" and done["error"]["step_id"] == "ask"
        assert [(s["id"], s["status"]) for s in done["steps"]] == [
            ("ask", "failed"),
            ("after", "cancelled"),
            ("each", "cancelled"),
        ]
        assert not [p for p in SEEN if p.endswith(f"after-reject={first['id']}")]

        looped = await env.create("rejectable", {"invoices": [{"no": "A"}, {"no": "B"}]})
        await until(env, looped["id"], "waiting_for_approval")
        await jobs.act(env.svc, looped["id"], Action.APPROVE, "bob")
        asked = await until(env, looped["id"], "waiting_for_approval")
        while asked["approval"]["step_id"] != "ask-each":
            asked = await until(env, looped["id"], "waiting_for_approval")
        await jobs.act(env.svc, looped["id"], Action.REJECT, "bob", "not A")
        ended = await settled(env, looped["id"])  # the rejection is the job's end; the run writes the record after
    assert ended["status"] == "failed" and ended["error"]["step_id"] == "ask-each"
    assert [(r["record_id"], r["status"]) for r in ended["records"]] == [("A", "failed")]
    assert not [p for p in SEEN if p.endswith(f"record=B-{looped['id']}")]  # record B never began


LOOP_THEN = """
name: loop-then
inputs:
  invoices: {type: records}
steps:
  - id: each
    action: for_each
    items: "{{ inputs.invoices }}"
    record_id: "{{ record.no }}"
    steps:
      - {id: ask-each, action: approval, message: "Pay {{ record.no }}?"}
  - {id: after, action: set, values: {done: true}}
"""


async def test_a_rerun_cannot_pass_over_a_loop_that_holds_approvals_and_did_not_succeed(env: Env) -> None:
    env.write(LOOP_THEN)
    async with running_worker(env):
        job = await env.create("loop-then", {"invoices": [{"no": "A"}]})
        await until(env, job["id"], "waiting_for_approval")
        await jobs.act(env.svc, job["id"], Action.REJECT, "bob", "not this one")
        assert (await until(env, job["id"], "failed", "completed"))["error"]["step_id"] == "ask-each"
    async with http_client(env.settings, role="operator") as http:
        past = await http.post(f"/api/v1/jobs/{job['id']}/rerun?from_step=after")
        assert past.status_code == 422
        assert "asks for approvals" in past.json()["fields"]["from_step"]
        assert (await http.post(f"/api/v1/jobs/{job['id']}/rerun?from_step=each")).status_code == 201


LATE_PAGE = """
name: late-page
steps:
  - {id: open, action: goto, url: "{{ site.url }}/form.html"}
  - {id: ask, action: approval, message: "Go to the payment page?"}
  - {id: go, action: goto, url: "{{ site.url }}/data.html?payment-page={{ job.id }}"}
  - {id: pay, action: click, selector: "#pay-now", timeout: 1}
"""


async def test_a_rerun_opens_the_page_past_the_approval_only_once_it_is_decided(env: Env) -> None:
    env.write(LATE_PAGE)
    async with running_worker(env):
        first = await env.create("late-page")
        await until(env, first["id"], "waiting_for_approval")
        await jobs.act(env.svc, first["id"], Action.APPROVE, "bob")
        failed = await until(env, first["id"], "failed", "completed")
        assert failed["error"]["step_id"] == "pay"  # data.html has no #pay-now
        page = f"/data.html?payment-page={first['id']}"
        assert SEEN.count(page) == 1
        again = await rerun(env, first["id"], "from_step=pay")
        await until(env, again["id"], "waiting_for_approval")
        assert SEEN.count(page) == 1  # not opened again before the approval was decided
        await jobs.act(env.svc, again["id"], Action.APPROVE, "bob")
        await until(env, again["id"], "failed", "completed")
    assert SEEN.count(page) == 2  # the re-run's page, opened after the decision


async def test_callers_cannot_forge_what_a_rerun_says_nor_decide_a_request_they_did_not_see(env: Env) -> None:
    env.write(PAY)
    async with http_client(env.settings, role="admin") as http:
        forged = await http.post(
            "/api/v1/runbooks/pay/jobs", json={"inputs": {"invoice": "X"}, "data": {"rerun_of": "x"}}
        )
        assert forged.status_code == 422 and "data.rerun_of" in forged.json()["fields"]
        async with running_worker(env):
            job = (await http.post("/api/v1/runbooks/pay/jobs", json={"inputs": {"invoice": "INV-10"}})).json()
            waiting = await until(env, job["id"], "waiting_for_approval")
            stale = await http.post(
                f"/api/v1/jobs/{job['id']}/approve", json={"expected_request": "2020-01-01T00:00:00+00:00"}
            )
            assert stale.status_code == 409 and "Pay invoice INV-10?" in stale.json()["error"]
            seen = {"expected_request": waiting["approval"]["requested_at"]}
            assert (await http.post(f"/api/v1/jobs/{job['id']}/approve", json=seen)).status_code == 200
            await until(env, job["id"], "completed", "failed")
