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
