"""for_each: one record per item, with its status, result, error and screenshot, written as it finishes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from playwright.async_api import async_playwright, expect

from orchestrator import auth, jobs
from orchestrator.db.engine import reading
from orchestrator.events import read_after
from tests.integration.conftest import Env, http_client, live_server, step
from tests.support import CHROMIUM, sign_in
from worker.browser import CHROMIUM_ARGS

LOOP = """
name: pay-invoices
inputs:
  invoices: {type: records, required: true}
settings: {retries: 0, step_timeout: 10}
steps:
  - {id: open, action: goto, url: "{{ site.url }}/pay.html"}
  - id: pay-each
    action: for_each
    items: "{{ inputs.invoices }}"
    as: invoice
    record_id: "{{ invoice.number }}"
    record_name: "{{ invoice.vendor }}"
    stop_on_error: STOP
    steps:
      - {id: number, action: fill, selector: "#invoice", value: "{{ invoice.number }}"}
      - {id: amount, action: fill, selector: "#amount", value: "{{ invoice.amount }}"}
      - {id: pay, action: click, selector: "#pay"}
      - {id: check, action: assert, selector: "#status", text: "paid", timeout: 1}
      - {id: receipt, action: extract, selector: "#status", save_as: receipt}
  - {id: after, action: set, values: {done: true}}
"""


def invoices(count: int) -> list[dict[str, Any]]:
    return [{"number": f"INV-{n}", "vendor": f"Vendor {n % 7}", "amount": n * 10} for n in range(1, count + 1)]


async def run_loop(env: Env, count: int, stop: bool = False) -> dict[str, Any]:
    job = await env.create(env.write(LOOP.replace("STOP", "true" if stop else "false")), {"invoices": invoices(count)})
    await env.work()
    return await jobs.get(env.svc, job["id"])


async def every_record(env: Env, job: dict[str, Any]) -> list[dict[str, Any]]:
    """The job object holds the first page of its records (issue 16); its records_page links to the rest."""
    records, link = list(job["records"]), job["records_page"]["next"]
    async with http_client(env.settings, role="viewer") as http:
        while link:
            page = (await http.get(link)).json()
            records, link = records + page["items"], page["next"]
    return records


async def test_two_hundred_records_with_one_in_ten_failing_complete_with_warnings(env: Env) -> None:
    job = await run_loop(env, 200)
    assert job["status"] == "completed", job["error"]
    assert job["warnings"] is True
    assert job["record_counts"] == {"total": 200, "succeeded": 180, "failed": 20, "skipped": 0}
    assert (len(job["records"]), job["records_page"]["total"]) == (100, 200)
    records = await every_record(env, job)
    assert [r["sequence"] for r in records] == list(range(1, 201))
    assert [r["record_id"] for r in records[:3]] == ["INV-1", "INV-2", "INV-3"]
    assert records[0]["record_name"] == "Vendor 1"
    failed = [r for r in records if r["status"] == "failed"]
    assert [r["record_id"] for r in failed] == [f"INV-{n}" for n in range(10, 201, 10)]
    assert all("check:" in r["error"] and "Payment rejected by bank" in r["error"] for r in failed)
    assert records[16]["result"] == {"receipt": "paid INV-17 (170 EUR)"}
    assert all(r["processed_at"] for r in records)
    assert all(r["screenshot_url"] for r in records)
    shot = next(a for a in job["artifacts"] if a["url"] == records[0]["screenshot_url"])
    assert shot["kind"] == "screenshot" and shot["mime_type"] == "image/png"
    assert (
        job["summary"] == "180 of 200 records succeeded; INV-10 failed: Expected '#status' to contain 'paid' "
        "but it shows 'Payment rejected by bank'. (and 19 more)."
    )
    assert step(job, "pay-each")["status"] == "success"
    assert step(job, "after")["status"] == "success"  # the loop went on, and so did the job


async def test_stop_on_error_ends_the_loop_at_the_first_failed_record_and_fails_the_job(env: Env) -> None:
    job = await run_loop(env, 30, stop=True)
    assert job["status"] == "failed"
    assert job["record_counts"] == {"total": 10, "succeeded": 9, "failed": 1, "skipped": 0}
    assert job["error"]["step_id"] == "pay-each"
    assert "Record 10 failed" in job["error"]["message"]
    assert step(job, "after")["status"] == "pending"


async def test_records_stream_as_events_while_the_loop_runs(env: Env) -> None:
    job = await run_loop(env, 12)
    async with reading(env.svc.engine) as conn:
        events = [e for e in await read_after(conn, 0, job_id=job["id"]) if e.type == "record"]
    assert [e.data["record"]["sequence"] for e in events] == list(range(1, 13))
    assert events[-1].data["record_counts"] == {"total": 12, "succeeded": 11, "failed": 1, "skipped": 0}
    assert json.dumps(events[9].data["record"]["status"]) == '"failed"'


async def test_items_that_are_not_a_list_fail_the_loop_step_clearly(env: Env) -> None:
    job = await env.run("""
        name: not-a-list
        steps:
          - id: loop
            action: for_each
            items: "{{ 42 }}"
            record_id: "{{ record }}"
            steps:
              - {id: noop, action: set, values: {a: 1}}
    """)
    assert job["status"] == "failed"
    assert "needs `items` to be a list; it is int" in step(job, "loop")["error"]


async def test_the_job_page_lists_records_live_and_filters_them_by_status(env: Env) -> None:
    slow = LOOP.replace("STOP", "false").replace(
        '      - {id: receipt, action: extract, selector: "#status", save_as: receipt}',
        '      - {id: receipt, action: extract, selector: "#status", save_as: receipt}\n'
        "      - {id: breathe, action: sleep, seconds: 0.1}",
    )
    job = await env.create(env.write(slow), {"invoices": invoices(40)})
    await auth.add_user(env.svc.engine, "watcher", "viewer", "watcher-password")
    async with live_server(env.settings) as url, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        work = asyncio.create_task(env.work())
        try:
            page = await browser.new_page()
            await sign_in(page, url, "watcher", "watcher-password")
            await page.goto(f"{url}/jobs/{job['id']}")
            rows = page.locator("[data-role=records] tr[data-sequence]")
            await expect(rows.nth(2)).to_be_attached(timeout=30_000)
            seen_early = await rows.count()
            assert seen_early < 40, "the records should arrive while the loop runs"
            await expect(rows).to_have_count(40, timeout=90_000)  # the rest arrive without a reload
            await page.get_by_label("Show records").select_option("failed")
            visible = page.locator("[data-role=records] tr[data-sequence]:visible")
            await expect(visible).to_have_count(4)
            assert await visible.evaluate_all("rs => rs.map(r => r.dataset.sequence)") == ["10", "20", "30", "40"]
            await expect(page.locator("[data-count=total]")).to_have_text("40")
            await expect(page.locator("[data-count=failed]")).to_have_text("4")
        finally:
            await work
            await browser.close()


async def test_rerun_of_the_failed_records_runs_only_those(env: Env) -> None:
    first = await run_loop(env, 30)
    assert first["record_counts"]["failed"] == 3
    async with http_client(env.settings, role="operator") as http:
        answer = await http.post(f"/api/v1/jobs/{first['id']}/rerun?records=failed")
        assert answer.status_code == 201, answer.text
        bad = await http.post(f"/api/v1/jobs/{first['id']}/rerun?records=all")
        assert bad.status_code == 422 and "records" in bad.json()["fields"]
    await env.work()
    again = await jobs.get(env.svc, answer.json()["id"])
    assert [r["record_id"] for r in again["records"]] == ["INV-10", "INV-20", "INV-30"]
    assert again["record_counts"] == {"total": 3, "succeeded": 0, "failed": 3, "skipped": 0}
    assert again["data"]["only_records"] == ["INV-10", "INV-20", "INV-30"]
    async with http_client(env.settings, role="operator") as http:
        clean = await run_loop(env, 5)
        none = await http.post(f"/api/v1/jobs/{clean['id']}/rerun?records=failed")
        assert none.status_code == 409 and "no failed records" in none.json()["error"]
