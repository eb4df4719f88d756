"""The /jobs page in a real browser: tabs, filters and paging a person uses, on jobs made over the API."""

from __future__ import annotations

import httpx
from playwright.async_api import expect

from orchestrator import auth
from tests.integration.conftest import Env, bearer, live_server
from tests.support import signed_in_page

RUNBOOK = """
name: listed
steps:
  - {id: one, action: set, values: {a: 1}}
"""


async def test_a_person_filters_the_job_list_by_tab_tag_source_and_search(env: Env) -> None:
    env.write(RUNBOOK)
    await auth.add_user(env.svc.engine, "olga", "viewer", "olga-password")
    headers = await bearer(env.settings, "operator")
    async with live_server(env.settings) as url, httpx.AsyncClient(base_url=url, headers=headers) as api:
        finance = [(await api.post("/api/v1/runbooks/listed/jobs", json={"tags": ["finance"]})).json()["id"]]
        finance.append((await api.post("/api/v1/runbooks/listed/jobs", json={"tags": ["finance"]})).json()["id"])
        other = (await api.post("/api/v1/runbooks/listed/jobs", json={"tags": ["hr"]})).json()["id"]
        report = {"process": "invoice-bot", "source": "uipath", "external_id": "R-77", "status": "faulted"}
        failed = (await api.post("/api/v1/ingest/jobs", json=report)).json()["id"]

        async with signed_in_page(url, "olga", "olga-password") as page:
            await page.goto(f"{url}/jobs")
            rows = page.locator("tbody[data-live=jobs] tr[data-job-id]")
            await expect(rows).to_have_count(4)

            await page.get_by_label("Tag").fill("finance")
            await page.get_by_role("button", name="Filter").click()
            await expect(rows).to_have_count(2)
            assert set(await rows.evaluate_all("rs => rs.map(r => r.dataset.jobId)")) == set(finance)
            assert other not in await page.content()

            await page.get_by_role("link", name="Reset").click()
            await page.get_by_label("Source").fill("uipath")
            await page.get_by_role("button", name="Filter").click()
            await expect(rows).to_have_count(1)
            await expect(rows.first.locator("[data-cell=source]")).to_have_text("uipath")

            await page.get_by_role("link", name="Reset").click()
            await page.get_by_label("Search").fill("r-77")
            await page.get_by_role("button", name="Filter").click()
            await expect(rows).to_have_count(1)
            assert await rows.first.get_attribute("data-job-id") == failed

            await page.get_by_role("link", name="Failed", exact=True).click()
            await expect(rows).to_have_count(1)
            await expect(rows.first.locator("[data-cell=status]")).to_have_text("failed", ignore_case=True)
            await page.get_by_role("link", name="Running", exact=True).click()
            await expect(rows).to_have_count(3)  # queued counts as running here
