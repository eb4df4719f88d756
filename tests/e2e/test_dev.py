"""The app as `make run` starts it: a demo job over HTTP and SSE, the live job page in Chromium, Ctrl-C.

The tests share one `orchestrator dev` process; the last one stops it.
"""

from __future__ import annotations

import asyncio
import csv
import io
import signal
import subprocess
from typing import Any

import httpx
from playwright.async_api import Browser, ConsoleMessage, expect

from tests.e2e.conftest import RUNBOOKS, DevApp, alive, children
from tests.support import Event, sign_in, sse


async def follow(http: httpx.AsyncClient, job_id: str) -> list[Event]:
    """The job's events from its snapshot to its report."""
    received: list[Event] = []
    async with asyncio.timeout(90), http.stream("GET", f"/api/v1/jobs/{job_id}/events") as response:
        assert response.status_code == 200
        async for event in sse(response):
            received.append(event)
            if event.type == "report":
                return received
    raise AssertionError(f"the stream ended before the report: {[e.type for e in received]}")


def by_kind(job: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [a for a in job["artifacts"] if a["kind"] == kind]


async def test_a_demo_invoices_job_runs_to_completion_followed_over_sse(dev: DevApp) -> None:
    async with dev.api() as http:
        runbooks = (await http.get("/api/v1/runbooks")).json()
        assert {"demo-invoices", "demo-order", "demo-status"} <= {r["name"] for r in runbooks["items"]}
        assert runbooks["problems"] == []

        created = await http.post("/api/v1/runbooks/demo-invoices/jobs", json={})
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]

        events = await follow(http, job_id)
        assert events[0].type == "snapshot"
        report = events[-1]
        assert report.data["job_id"] == job_id
        assert report.data["status"] == "completed", report.data
        assert any(e.type == "step" for e in events)
        assert any(e.type == "screenshot" for e in events)
        ids = [e.id for e in events[1:]]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)

        job = (await http.get(f"/api/v1/jobs/{job_id}")).json()
        assert job["status"] == "completed"
        assert job["error"] is None
        assert all(s["status"] == "success" for s in job["steps"]), [(s["id"], s["error"]) for s in job["steps"]]
        assert job["inputs"]["password"] == "********"
        assert job["outputs"]["first_invoice"] == "INV-2024-001"
        assert job["robot"]

        screenshots = by_kind(job, "screenshot")
        assert screenshots
        shot = await http.get(screenshots[0]["url"])
        assert shot.status_code == 200
        assert shot.headers["content-type"] == "image/png"
        assert shot.content.startswith(b"\x89PNG")

        exports = {a["name"]: a for a in by_kind(job, "export")}
        assert set(exports) == {"invoices.csv", "invoices.json"}
        exported = await http.get(exports["invoices.csv"]["url"])
        assert exported.status_code == 200
        assert "attachment" in exported.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert rows and rows[0]["Number"] == "INV-2024-001"
        assert len(rows) == job["outputs"]["invoice_count"]
        as_json = (await http.get(exports["invoices.json"]["url"])).json()
        assert as_json == rows

        [download] = by_kind(job, "download")
        assert download["name"] == "statement.csv"
        statement = await http.get(download["url"])
        assert statement.status_code == 200
        assert statement.content == (RUNBOOKS / "demo" / "files" / "statement.csv").read_bytes()
        assert 'filename="statement.csv"' in statement.headers["content-disposition"]


async def test_the_job_page_follows_a_running_job_live_without_console_errors(dev: DevApp, browser: Browser) -> None:
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console: {message.text}")

    context = await browser.new_context()
    try:
        page = await context.new_page()
        page.on("console", on_console)
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        async with dev.api("operator") as http:
            created = await http.post("/api/v1/runbooks/demo-status/jobs", json={"inputs": {"settle_seconds": 3}})
            assert created.status_code == 201, created.text
            job_id = created.json()["id"]

        await sign_in(page, dev.url, "admin", dev.admin_password())
        response = await page.goto(f"{dev.url}/jobs/{job_id}")
        assert response is not None and response.ok
        await page.evaluate("window.__loadedOnce = true")
        badge = page.locator("[data-role=status-badge]")
        assert (await badge.inner_text()).strip() in ("queued", "running")
        await expect(page.get_by_role("button", name="Cancel", exact=True)).to_be_visible()

        await expect(badge).to_have_text("completed", timeout=60_000)
        assert await page.evaluate("window.__loadedOnce === true"), "the page was reloaded"
        await expect(page.get_by_role("button", name="Cancel", exact=True)).to_have_count(0)
        last_step = page.locator("[data-role=steps] [data-step-id='dashboard-screenshot']")
        await expect(last_step).to_have_attribute("data-status", "success")
        assert problems == []
    finally:
        await context.close()


async def test_an_approver_approves_on_the_job_page_and_the_order_is_placed(dev: DevApp, browser: Browser) -> None:
    context = await browser.new_context()
    try:
        page = await context.new_page()
        async with dev.api("operator") as http:
            created = await http.post("/api/v1/runbooks/demo-approval/jobs", json={})
            assert created.status_code == 201, created.text
            job_id = created.json()["id"]
        await sign_in(page, dev.url, "admin", dev.admin_password())
        await page.goto(f"{dev.url}/jobs/{job_id}")
        approve = page.get_by_role("button", name="Approve", exact=True)
        await expect(approve).to_be_visible(timeout=60_000)
        await expect(page.get_by_role("button", name="Reject", exact=True)).to_be_visible()
        await expect(page.get_by_text("Order 12 items from Initech for 4800 EUR?").first).to_be_visible()
        await approve.click()
        badge = page.locator("[data-role=status-badge]")
        await expect(badge).to_have_text("completed", timeout=60_000)
        await expect(approve).to_have_count(0)
        async with dev.api("viewer") as http:
            job = (await http.get(f"/api/v1/jobs/{job_id}")).json()
        assert job["outputs"]["order_number"].startswith("ACME-")  # submitted on the page filled before
        assert [(a["actor"], a["action"], a["outcome"]) for a in job["audit"]] == [("admin", "approve", "ok")]
    finally:
        await context.close()


async def test_the_handoff_demo_is_finished_by_a_person_at_the_wheel(dev: DevApp, browser: Browser) -> None:
    """demo-handoff stops at a one-time code only a person has (shown on /demo/phone.html); an operator
    takes the wheel, types it into the live browser, and the job goes on by itself."""
    context = await browser.new_context()
    try:
        phone = await context.new_page()
        async with dev.api("operator") as http:
            created = await http.post("/api/v1/runbooks/demo-handoff/jobs", json={})
            assert created.status_code == 201, created.text
            job_id = created.json()["id"]
            async with asyncio.timeout(60):
                while (job := (await http.get(f"/api/v1/jobs/{job_id}")).json())["status"] != "paused":
                    await asyncio.sleep(0.2)
            assert job["handoff"]["message"].startswith("Enter the one-time code shown on")
            await phone.goto(f"{dev.url}/demo/phone.html")
            await expect(phone.locator("#phone-code")).not_to_have_text("······")
            code = await phone.locator("#phone-code").inner_text()
            assert (await http.post(f"/api/v1/jobs/{job_id}/control")).status_code == 200
            for event in ({"type": "type", "text": code}, {"type": "key", "key": "Enter"}):  # the field has focus
                assert (await http.post(f"/api/v1/jobs/{job_id}/input", json=event)).status_code == 202
            async with asyncio.timeout(60):
                while (job := (await http.get(f"/api/v1/jobs/{job_id}")).json())["status"] not in (
                    "completed",
                    "failed",
                ):
                    await asyncio.sleep(0.2)
        assert job["status"] == "completed", job["error"]
        assert job["outputs"]["dashboard"] == "Signed in: welcome to your dashboard"
        assert [e["action"] for e in job["audit"]] == ["take_control", "give_back"]
        assert code not in str(job)
    finally:
        await context.close()


def test_ctrl_c_stops_the_dev_process_and_its_embedded_redis(dev: DevApp) -> None:
    before = children(dev.process.pid)
    redis = [pid for pid, name in before.items() if name.startswith("redis-server")]
    assert len(redis) == 1, before
    assert len(before) >= 4, before  # redis-server, web, worker, scheduler

    dev.process.send_signal(signal.SIGINT)
    try:
        code = dev.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"orchestrator dev still runs 15 s after Ctrl-C:\n{dev.output()[-3000:]}") from None
    assert code == 0, dev.output()[-3000:]
    assert not alive(redis[0]), "the embedded redis-server outlived orchestrator dev"
    assert [pid for pid in before if alive(pid)] == [], "a child process outlived orchestrator dev"
