"""Named approvers (issue 19, point 4): only the people an approval step names may decide, `required`
distinct people must approve (each a vote in the audit with its evidence hash), one reject rejects,
self-approval applies to each approver, and the job page shows who approved so far."""

from __future__ import annotations

import asyncio
import html
import re
from typing import Any

import httpx

from orchestrator import auth, jobs
from orchestrator.approvals import time_out_due
from orchestrator.db import tables as t
from orchestrator.db.engine import writing
from orchestrator.db.tables import utcnow
from orchestrator.views import iso
from tests.integration.conftest import Env, http_client, running_worker, step, to_waiting, until
from tests.integration.test_accounts import orchestrator

PASSWORD = "a long enough password"

BIG = """
name: pay-big
steps:
  - {id: open, action: goto, url: "{{ site.url }}/form.html"}
  - {id: ask, action: approval, message: "Pay 12,000 EUR?", approvers: [role:finance, user:carol], required: 2}
  - {id: after, action: set, values: {paid: true}}
"""

#: Who is who: name -> roles (a comma list: built-in roles give permissions, others are groups).
PEOPLE = {
    "ann": "approver,finance",
    "bob": "approver,finance",
    "carol": "approver",
    "dave": "approver",
    "eve": "viewer,finance",  # in finance, but may not approve at all
    "olga": "operator,approver,finance",  # starts jobs, and approves them
}


async def people(env: Env) -> dict[str, str]:
    """The PEOPLE as users, each with a token that acts for them (ann has a second one)."""
    tokens = {}
    for name, roles in PEOPLE.items():
        await auth.add_user(env.svc.engine, name, roles, PASSWORD)
        tokens[name] = await auth.create_token(env.svc.engine, name, roles, created_by="tests", owner=name)
    tokens["ann-phone"] = await auth.create_token(env.svc.engine, "ann-phone", "approver", "tests", owner="ann")
    return tokens


async def decide(http: httpx.AsyncClient, token: str, job_id: str, action: str = "approve", **body: Any) -> Any:
    return await http.post(f"/api/v1/jobs/{job_id}/{action}", json=body, headers={"Authorization": f"Bearer {token}"})


def audit(job: dict[str, Any]) -> list[tuple[str, str, str, str | None]]:
    return [(a["actor"], a["action"], a["outcome"], a["evidence"]) for a in job["audit"]]


async def page_text(http: httpx.AsyncClient, token: str, job_id: str) -> tuple[str, list[str]]:
    """The job page as this person sees it: its text, and the labels of its action buttons."""
    page = (await http.get(f"/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"})).text
    buttons = re.findall(r'<button[^>]*data-action="[^"]*"[^>]*>([^<]*)</button>', page)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split()), buttons


async def test_only_named_approvers_decide_and_each_distinct_approval_is_a_vote_until_enough(env: Env) -> None:
    env.write(BIG)
    tokens = await people(env)
    async with running_worker(env), http_client(env.settings, role=None) as http:
        job_id = (await env.create("pay-big"))["id"]
        asked = (await until(env, job_id, "waiting_for_approval"))["approval"]
        assert (asked["approvers"], asked["required"], asked["votes"]) == (["role:finance", "user:carol"], 2, [])
        shown = asked["screenshot_sha256"]
        assert shown

        outside = await decide(http, tokens["dave"], job_id)
        assert outside.status_code == 403
        assert outside.json()["error"] == (
            f"Only role:finance, user:carol may decide on the approval of job {job_id} (step ask); "
            "dave is not one of them."
        )
        assert (await decide(http, tokens["dave"], job_id, "reject")).status_code == 403
        assert (await decide(http, tokens["eve"], job_id)).status_code == 403  # finance, but no job:approve

        first = await decide(http, tokens["ann"], job_id, comment="the amount matches the order")
        assert first.status_code == 200, first.text
        assert first.json()["status"] == "waiting_for_approval"
        [vote] = first.json()["approval"]["votes"]
        assert (vote["by"], vote["comment"], vote["evidence"]) == ("ann", "the amount matches the order", shown)
        again = await decide(http, tokens["ann-phone"], job_id)  # the same person, another credential
        assert again.status_code == 409
        assert again.json()["error"].startswith(f"ann approved job {job_id} already")
        assert "1 more approval(s), each from another person" in again.json()["error"]

        text, anns = await page_text(http, tokens["ann"], job_id)
        assert "Approved so far by ann" in text and "1 more approval needed (2 in all" in text
        assert "Who may decide: role:finance, user:carol." in text
        assert "Approve" not in anns and "Reject" not in anns  # she decided already
        assert "Approve" not in (await page_text(http, tokens["dave"], job_id))[1]  # not named
        assert {"Approve", "Reject"} <= set((await page_text(http, tokens["bob"], job_id))[1])

        second = await decide(http, tokens["bob"], job_id)
        assert second.status_code == 200, second.text
        done = await until(env, job_id, "completed", "failed")
    assert done["status"] == "completed", done["error"]
    assert step(done, "after")["captured"] == {"paid": True}
    approval = done["approval"]
    assert (approval["decision"], approval["by"]) == ("approved", "token:bob")
    assert [v["by"] for v in approval["votes"]] == ["ann", "bob"]
    assert audit(done) == [
        ("token:dave", "approve", "refused: not an approver", None),
        ("token:dave", "reject", "refused: not an approver", None),
        ("token:ann", "approve", "ok: approval 1 of 2", shown),
        ("token:ann-phone", "approve", "refused: approved already", None),
        ("token:bob", "approve", "ok", shown),
    ]


async def test_any_one_reject_rejects_a_request_that_needs_several_approvals(env: Env) -> None:
    env.write(BIG)
    tokens = await people(env)
    async with running_worker(env), http_client(env.settings, role=None) as http:
        job_id = (await env.create("pay-big"))["id"]
        await until(env, job_id, "waiting_for_approval")
        assert (await decide(http, tokens["ann"], job_id)).status_code == 200
        refused = await decide(http, tokens["carol"], job_id, "reject", comment="not this month")
        assert refused.status_code == 200, refused.text
        done = await until(env, job_id, "failed", "completed")
        late = await decide(http, tokens["bob"], job_id)
    assert done["status"] == "failed"
    assert done["error"] == {"message": "Rejected by token:carol: not this month", "step_id": "ask"}
    assert [v["by"] for v in done["approval"]["votes"]] == ["ann"]
    assert step(done, "after")["status"] != "success"
    assert late.status_code == 409 and "it is failed" in late.json()["error"]


FOUR_EYES = """
name: four-eyes
settings: {self_approval: false}
steps:
  - {id: ask, action: approval, message: "Pay?", approvers: [role:finance], required: 2}
"""


async def test_self_approval_rules_apply_to_each_approver(env: Env) -> None:
    env.write(FOUR_EYES)
    tokens = await people(env)
    async with running_worker(env), http_client(env.settings, role=None) as http:
        started = await http.post(
            "/api/v1/runbooks/four-eyes/jobs", json={}, headers={"Authorization": f"Bearer {tokens['olga']}"}
        )
        assert started.status_code == 201, started.text  # operator,approver,finance: may run jobs
        job_id = started.json()["id"]
        await until(env, job_id, "waiting_for_approval")
        own = await decide(http, tokens["olga"], job_id)
        assert own.status_code == 403 and "self_approval: false" in own.json()["error"]
        inbox = await http.get("/api/v1/approvals", headers={"Authorization": f"Bearer {tokens['olga']}"})
        assert inbox.json() == {"items": [], "total": 0}
        assert (await decide(http, tokens["ann"], job_id)).status_code == 200
        assert (await decide(http, tokens["bob"], job_id)).status_code == 200
        done = await until(env, job_id, "completed", "failed")
    assert done["status"] == "completed"
    assert [(a["actor"], a["outcome"]) for a in done["audit"]] == [
        ("token:olga", "refused: self-approval"),
        ("token:ann", "ok: approval 1 of 2"),
        ("token:bob", "ok"),
    ]


async def test_the_timeout_sweep_decides_a_request_with_votes_and_keeps_them(env: Env) -> None:
    env.write(BIG)
    tokens = await people(env)
    job_id = (await env.create("pay-big"))["id"]
    await to_waiting(env, job_id)  # its run is gone: the sweep keeps its deadline
    asked = {"step_id": "ask", "message": "Pay?", "requested_at": iso(utcnow()), "timeout_s": 0.1}
    asked |= {"on_timeout": "reject", "approvers": ["role:finance"], "required": 2, "votes": []}
    async with writing(env.svc.engine) as conn:
        await conn.execute(t.jobs.update().where(t.jobs.c.id == job_id).values(approval=asked))
    async with http_client(env.settings, role=None) as http:
        assert (await decide(http, tokens["bob"], job_id)).status_code == 200
    assert (await jobs.get(env.svc, job_id))["status"] == "waiting_for_approval"
    async with asyncio.timeout(30):  # the sweep the scheduler runs, until the deadline (and its grace) passed
        while not await time_out_due(env.svc.engine, env.svc.redis):
            await asyncio.sleep(0.5)
    done = await jobs.get(env.svc, job_id)
    assert done["status"] == "failed"
    assert done["error"]["message"] == "No decision within 0.1 s: rejected automatically."
    assert [v["by"] for v in done["approval"]["votes"]] == ["bob"]


async def test_roles_given_as_a_list_add_up_their_permissions_and_name_groups(env: Env) -> None:
    env.write(BIG)
    added = orchestrator(env, "users", "add", "ann", "--role", "approver, finance", "--password-stdin", stdin="x" * 12)
    assert added.returncode == 0, added.stderr
    assert "user ann added with role approver,finance" in added.stdout
    assert "ann\tapprover,finance\tactive" in orchestrator(env, "users", "list").stdout
    group_only = orchestrator(env, "users", "add", "gus", "--role", "finance", "--password-stdin", stdin="x" * 12)
    assert group_only.returncode == 1
    assert "role: must hold at least one of viewer, operator, approver, admin, metrics" in group_only.stderr
    bad = orchestrator(env, "tokens", "create", "t", "--role", "viewer,fin ance")
    assert bad.returncode == 1 and "'fin ance' is no role name" in bad.stderr
    made = orchestrator(env, "tokens", "create", "scraper", "--role", "viewer,metrics")
    assert made.returncode == 0, made.stderr
    scraper = {"Authorization": f"Bearer {made.stdout.strip().splitlines()[-1]}"}
    async with http_client(env.settings, role=None) as http:
        assert (await http.get("/metrics", headers=scraper)).status_code == 200  # metrics
        assert (await http.get("/api/v1/jobs", headers=scraper)).status_code == 200  # and viewer
        refused = await http.post("/api/v1/runbooks/pay-big/jobs", json={}, headers=scraper)
        assert refused.status_code == 403
        assert "Your role (viewer,metrics) does not allow this" in refused.json()["error"]
