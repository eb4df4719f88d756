"""The approval inbox (issue 19, point 5): GET /api/v1/approvals and /approvals list every job waiting
for a decision the signed-in person may make, oldest first, and the header counts them; two people of
`role:finance` complete a `required: 2` approval from the page in a real browser, live, while someone
outside the list is refused (403, audited)."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from playwright.async_api import async_playwright, expect

from orchestrator import auth, jobs
from tests.integration.conftest import Env, http_client, live_server, running_worker, until
from tests.integration.test_accounts import orchestrator
from tests.integration.test_approvers import PASSWORD, decide
from tests.support import CHROMIUM, sign_in
from worker.browser import CHROMIUM_ARGS

CODE = "4711-secret-code"
FIRST = """
name: first
inputs:
  code: {type: string, secret: true}
steps:
  - {id: open, action: goto, url: "{{ site.url }}/form.html"}
  - {id: note, action: set, values: {amount: 120, code: "{{ inputs.code }}"}}
  - {id: ask, action: approval, message: "Pay 120 EUR?"}
"""
SECOND = """
name: second
steps:
  - {id: ask, action: approval, message: "Only bob may say", approvers: [user:bob]}
"""


def as_(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def inbox(http: httpx.AsyncClient, token: str) -> dict[str, Any]:
    answer = await http.get("/api/v1/approvals", headers=as_(token))
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def test_the_inbox_lists_what_each_person_may_decide_now_oldest_first(env: Env) -> None:
    env.write(FIRST)
    env.write(SECOND)
    tokens = {}
    for name, roles in {"ann": "approver,finance", "bob": "approver", "vic": "viewer", "otto": "operator"}.items():
        await auth.add_user(env.svc.engine, name, roles, PASSWORD)
        tokens[name] = await auth.create_token(env.svc.engine, name, roles, created_by="tests", owner=name)
    async with running_worker(env), http_client(env.settings, role=None) as http:
        first = (await env.create("first", {"code": CODE}))["id"]
        asked = (await until(env, first, "waiting_for_approval"))["approval"]
        second = (await env.create("second"))["id"]
        await until(env, second, "waiting_for_approval")

        bobs = await inbox(http, tokens["bob"])
        assert [i["job_id"] for i in bobs["items"]] == [first, second] and bobs["total"] == 2
        assert [i["job_id"] for i in (await inbox(http, tokens["ann"]))["items"]] == [first]  # second: only bob
        assert await inbox(http, tokens["vic"]) == {"items": [], "total": 0}  # may not approve
        assert await inbox(http, tokens["otto"]) == {"items": [], "total": 0}
        assert (await http.get("/api/v1/approvals")).status_code == 401

        item = bobs["items"][0]
        assert {k: item[k] for k in ("runbook", "runbook_version", "message", "step_id", "required")} == {
            "runbook": "first",
            "runbook_version": 1,
            "message": "Pay 120 EUR?",
            "step_id": "ask",
            "required": 1,
        }
        assert (item["requested_at"], item["votes"], item["approvers"]) == (asked["requested_at"], [], None)
        assert item["screenshot_url"] == asked["screenshot_url"]
        assert item["screenshot_url"].startswith(f"/api/v1/jobs/{first}/artifacts/")
        assert (await http.get(item["screenshot_url"], headers=as_(tokens["bob"]))).status_code == 200
        assert item["captured"] == asked["captured"] == {"amount": 120, "code": "********"}  # as the job shows it
        assert CODE not in json.dumps(bobs)
        assert bobs["items"][1]["approvers"] == ["user:bob"]

        page = (await http.get("/jobs", headers=as_(tokens["bob"]))).text
        assert re.search(r'data-role="approvals-count"[^>]*>2</span>', page)  # the header's count
        quiet = (await http.get("/jobs", headers=as_(tokens["vic"]))).text
        assert re.search(r'data-role="approvals-count"[^>]*hidden>0</span>', quiet)

        assert (await decide(http, tokens["bob"], first)).status_code == 200
        assert [i["job_id"] for i in (await inbox(http, tokens["bob"]))["items"]] == [second]
        assert (await decide(http, tokens["bob"], second, "reject")).status_code == 200
        assert await inbox(http, tokens["bob"]) == {"items": [], "total": 0}
        await until(env, first, "completed")


INVOICE = """
name: invoice-big
steps:
  - {id: open, action: goto, url: "{{ site.url }}/form.html"}
  - {id: ask, action: approval, message: "Pay invoice 4711 (12,000 EUR)?", approvers: [role:finance], required: 2}
  - {id: after, action: set, values: {paid: true}}
"""


async def test_two_of_finance_approve_from_the_inbox_in_a_browser_and_an_outsider_is_refused(env: Env) -> None:
    env.write(INVOICE)
    for name, roles in (("ann", "approver,finance"), ("bob", "approver,finance"), ("carol", "approver")):
        added = orchestrator(env, "users", "add", name, "--role", roles, "--password-stdin", stdin=f"{PASSWORD}\n")
        assert added.returncode == 0, added.stderr
    made = orchestrator(env, "tokens", "create", "carol", "--role", "approver")  # acts for the user carol
    assert made.returncode == 0, made.stderr
    carol = made.stdout.strip().splitlines()[-1]
    async with running_worker(env), live_server(env.settings) as url, async_playwright() as playwright:
        job_id = (await env.create("invoice-big"))["id"]
        await until(env, job_id, "waiting_for_approval")
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            ann = await (await browser.new_context()).new_page()
            bob = await (await browser.new_context()).new_page()
            for page, name in ((ann, "ann"), (bob, "bob")):
                await sign_in(page, url, name, PASSWORD)
                await page.get_by_role("link", name="Approvals").click()
                await expect(page.get_by_role("heading", name="Approvals")).to_be_visible()
                await expect(page.locator('[data-role="approvals-count"]')).to_have_text("1")
            row = ann.locator(f'tr[data-job-id="{job_id}"]')
            await expect(row).to_contain_text("invoice-big")
            await expect(row).to_contain_text("Pay invoice 4711 (12,000 EUR)?")
            await expect(row).to_contain_text("Nobody yet")
            await expect(row).to_contain_text("2 of 2 approvals still needed · from role:finance")
            thumb = row.get_by_role("img", name="The page when approval was asked (invoice-big)")
            await expect(thumb).to_be_visible()
            assert await thumb.evaluate("img => img.complete && img.naturalWidth > 0")  # the evidence loads

            async with httpx.AsyncClient(base_url=url, timeout=30) as http:  # carol: approver, not finance
                refused = await decide(http, carol, job_id)
                assert refused.status_code == 403
                assert "Only role:finance may decide" in refused.json()["error"]
                assert (await inbox(http, carol))["total"] == 0

            await row.get_by_label("Comment").fill("matches the purchase order")
            await row.get_by_role("button", name="Approve", exact=True).click()
            await expect(ann.get_by_text("Nothing waits for your decision.")).to_be_visible()
            await expect(ann.locator('[data-role="approvals-count"]')).to_be_hidden()
            theirs = bob.locator(f'tr[data-job-id="{job_id}"]')  # bob's page learns of ann's approval live
            await expect(theirs).to_contain_text("Approved by ann", timeout=20_000)
            await expect(theirs).to_contain_text("matches the purchase order")
            await expect(theirs).to_contain_text("1 of 2 approvals still needed")
            assert (await jobs.get(env.svc, job_id))["status"] == "waiting_for_approval"

            await theirs.get_by_role("button", name="Approve", exact=True).click()
            await expect(bob.get_by_text("Nothing waits for your decision.")).to_be_visible()
        finally:
            await browser.close()
        done = await until(env, job_id, "completed", "failed")
    assert done["status"] == "completed", done["error"]
    assert [v["by"] for v in done["approval"]["votes"]] == ["ann", "bob"]
    assert done["approval"]["votes"][0]["comment"] == "matches the purchase order"
    assert [(a["actor"], a["action"], a["outcome"]) for a in done["audit"]] == [
        ("token:carol", "approve", "refused: not an approver"),
        ("ann", "approve", "ok: approval 1 of 2"),
        ("bob", "approve", "ok"),
    ]
    shown = done["approval"]["screenshot_sha256"]
    assert all(a["evidence"] == shown for a in done["audit"][1:])
