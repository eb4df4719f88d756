"""The run form on /runbooks/{name}: built from the typed inputs, errors shown next to their fields."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import expect

from orchestrator import auth, jobs
from tests.integration.conftest import Env, live_server
from tests.support import signed_in_page

RUNBOOK = """
name: typed-form
inputs:
  customer: {type: string, required: true, pattern: "[A-Z].*"}
  quantity: {type: integer, minimum: 1, maximum: 9}
  mode: {type: string, enum: [fast, careful], default: careful}
  rows: {type: records}
steps:
  - {id: one, action: set, values: {a: 1}}
"""


async def test_the_run_form_shows_each_server_error_by_its_field_then_runs_the_job(env: Env) -> None:
    env.write(RUNBOOK)
    await auth.add_user(env.svc.engine, "ops", "operator", "ops-password")
    async with live_server(env.settings) as url, signed_in_page(url, "ops", "ops-password") as page:
        await page.goto(f"{url}/runbooks/typed-form")
        await expect(page.locator("#input-mode")).to_have_value("careful")
        await page.locator("#input-customer").fill("lowercase ltd")
        await page.locator("#input-quantity").fill("12")
        await page.get_by_role("button", name="Run").click()
        await expect(page.locator("#input-customer-error")).to_contain_text("pattern")
        await expect(page.locator("#input-quantity-error")).to_contain_text("9")
        assert "/jobs/" not in page.url
        await page.locator("#input-customer").fill("Acme")
        await page.locator("#input-quantity").fill("3")
        await page.locator("#input-rows").fill('[{"id": "r1"}]')
        await page.get_by_role("button", name="Run").click()
        await page.wait_for_url("**/jobs/*")
        await expect(page.locator("[data-role=status-badge]")).to_be_visible()


async def test_records_can_be_given_to_the_run_form_as_a_csv_file(env: Env, tmp_path: Path) -> None:
    env.write(RUNBOOK)
    await auth.add_user(env.svc.engine, "ops", "operator", "ops-password")
    sheet = tmp_path / "rows.csv"
    sheet.write_text("id,name\nr1,First\nr2,Second\n")
    async with live_server(env.settings) as url, signed_in_page(url, "ops", "ops-password") as page:
        await page.goto(f"{url}/runbooks/typed-form")
        await page.locator("#input-customer").fill("Acme")
        await page.locator("#input-rows-file").set_input_files(str(sheet))
        await page.get_by_role("button", name="Run").click()
        await page.wait_for_url("**/jobs/*")
        job_id = page.url.rsplit("/", 1)[-1]
    job = await jobs.get(env.svc, job_id)
    assert job["inputs"]["rows"] == [{"id": "r1", "name": "First"}, {"id": "r2", "name": "Second"}]
    assert (job["inputs"]["customer"], job["source"]) == ("Acme", "ui")
