"""Nothing runs away (issue 16): records inputs are capped, the job list leaves inputs out, the job
object holds a bounded page of records with a link to the rest (and the job page pages them), and
artifacts are never cached."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import expect

from orchestrator import auth
from orchestrator.inputs import validate
from orchestrator.runbooks.schema import InputSpec
from tests.integration.conftest import Env, bearer, http_client, live_server
from tests.support import signed_in_page

ROWS = """
name: rows
inputs:
  rows: {type: records}
  who: {type: string}
steps:
  - {id: one, action: set, values: {a: 1}}
"""


def reported(count: int) -> dict[str, Any]:
    """A run reported by another tool with `count` records; every tenth one failed."""
    return {
        "process": "invoice-bot",
        "source": "uipath",
        "external_id": f"run-{count}",
        "status": "Successful",
        "records": [
            {"sequence": n, "record_id": f"INV-{n}", "status": "failed" if n % 10 == 0 else "success"}
            for n in range(1, count + 1)
        ],
    }


async def test_a_records_input_over_the_count_or_size_cap_is_a_422_naming_the_input_and_the_limit(env: Env) -> None:
    env.write(ROWS)
    async with http_client(env.settings, role="operator") as http:
        many = await http.post("/api/v1/runbooks/rows/jobs", json={"inputs": {"rows": [{"n": 1}] * 10_001}})
        assert many.status_code == 422, many.text[:300]
        assert "10000" in many.json()["fields"]["rows"] and "ORCH_MAX_RECORDS" in many.json()["fields"]["rows"]
        big = [{"text": "x" * 100_000} for _ in range(110)]  # 11 MB as JSON: over the 10 MiB default
        large = await http.post("/api/v1/runbooks/rows/jobs", json={"inputs": {"rows": big}})
        assert large.status_code == 422, large.text[:300]
        assert "ORCH_MAX_RECORDS_BYTES" in large.json()["fields"]["rows"]
        fine = await http.post("/api/v1/runbooks/rows/jobs", json={"inputs": {"rows": [{"n": 1}] * 10_000}})
        assert fine.status_code == 201, fine.text[:300]


def test_the_records_caps_are_the_ones_given() -> None:
    specs = {"rows": InputSpec(type="records")}
    assert validate(specs, {"rows": [{"n": 1}] * 3}, max_records=3)["rows"] == [{"n": 1}] * 3
    try:
        validate(specs, {"rows": [{"n": 1}] * 4}, max_records=3)
    except Exception as exc:  # noqa: BLE001 - the message is what is checked
        assert "at most 3 records" in str(getattr(exc, "fields", {}).get("rows")), exc
    else:
        raise AssertionError("4 records passed a cap of 3")
    try:
        validate(specs, {"rows": [{"text": "x" * 200}]}, max_records_bytes=100)
    except Exception as exc:  # noqa: BLE001
        assert "100 bytes" in str(getattr(exc, "fields", {}).get("rows")), exc
    else:
        raise AssertionError("a 200-byte records input passed a cap of 100 bytes")


async def test_the_job_list_leaves_inputs_out_and_the_job_keeps_them(env: Env) -> None:
    env.write(ROWS)
    async with http_client(env.settings, role="operator") as http:
        created = await http.post("/api/v1/runbooks/rows/jobs", json={"inputs": {"rows": [{"n": 1}], "who": "me"}})
        assert created.status_code == 201, created.text[:300]
        listed = (await http.get("/api/v1/jobs")).json()["items"]
        assert [item["id"] for item in listed] == [created.json()["id"]]
        assert "inputs" not in listed[0]
        assert listed[0]["status"] == "queued" and listed[0]["record_counts"]["total"] == 0
        job = (await http.get(f"/api/v1/jobs/{created.json()['id']}")).json()
        assert job["inputs"] == {"rows": [{"n": 1}], "who": "me"}


async def test_the_job_holds_the_first_hundred_records_and_links_to_the_rest(env: Env) -> None:
    async with http_client(env.settings, role="operator") as http:
        made = await http.post("/api/v1/ingest/jobs", json=reported(250))
        assert made.status_code == 201, made.text[:300]
        job_id = made.json()["id"]
        job = (await http.get(f"/api/v1/jobs/{job_id}")).json()
        assert job["record_counts"]["total"] == 250
        assert [r["sequence"] for r in job["records"]] == list(range(1, 101))
        page = job["records_page"]
        assert (page["total"], page["count"]) == (250, 100)
        assert page["next"] == f"/api/v1/jobs/{job_id}/records?start=100&limit=100"

        sequences = [r["sequence"] for r in job["records"]]
        link = page["next"]
        while link:
            answer = (await http.get(link)).json()
            sequences += [r["sequence"] for r in answer["items"]]
            link = answer["next"]
        assert sequences == list(range(1, 251))

        failed = (await http.get(f"/api/v1/jobs/{job_id}/records?status=failed&limit=10")).json()
        assert (failed["total"], failed["start"], failed["count"]) == (25, 0, 10)
        assert [r["record_id"] for r in failed["items"]] == [f"INV-{n}" for n in range(10, 101, 10)]
        assert failed["next"] == f"/api/v1/jobs/{job_id}/records?status=failed&start=10&limit=10"

        bad = await http.get(f"/api/v1/jobs/{job_id}/records?status=lost&limit=0")
        assert bad.status_code == 422 and set(bad.json()["fields"]) == {"status", "limit"}
        assert (await http.get("/api/v1/jobs/nope/records")).status_code == 404


async def test_the_job_page_shows_a_page_of_records_loads_more_and_filters_on_the_server(env: Env) -> None:
    await auth.add_user(env.svc.engine, "reader", "viewer", "reader-password")
    async with http_client(env.settings, role="operator") as http:
        job_id = (await http.post("/api/v1/ingest/jobs", json=reported(250))).json()["id"]
    async with live_server(env.settings) as url, signed_in_page(url, "reader", "reader-password") as page:
        await page.goto(f"{url}/jobs/{job_id}")
        rows = page.locator("[data-role=records] tr[data-sequence]")
        await expect(rows).to_have_count(100)
        more = page.get_by_role("button", name="Show more records")
        await more.click()
        await expect(rows).to_have_count(200)
        await more.click()
        await expect(rows).to_have_count(250)
        await expect(more).to_be_hidden()
        assert await rows.evaluate_all("rs => rs.map(r => Number(r.dataset.sequence))") == list(range(1, 251))

        await page.reload()
        await expect(rows).to_have_count(100)
        await page.get_by_label("Show records").select_option("failed")
        visible = page.locator("[data-role=records] tr[data-sequence]:visible")
        await expect(visible).to_have_count(25)  # all of them, the 15 past the first page too
        numbers = await visible.evaluate_all("rs => rs.map(r => Number(r.dataset.sequence))")
        assert numbers == list(range(10, 251, 10))


async def test_artifacts_are_sent_with_no_store(env: Env) -> None:
    async with (
        live_server(env.settings) as url,
        httpx.AsyncClient(base_url=url, headers=await bearer(env.settings)) as http,
    ):
        job_id = (await http.post("/api/v1/ingest/jobs", json=reported(1))).json()["id"]
        files = {"file": ("note.txt", b"hello", "text/plain")}
        [stored] = (await http.post(f"/api/v1/ingest/jobs/{job_id}/files", files=files)).json()["files"]
        answer = await http.get(stored["url"])
    assert answer.status_code == 200 and answer.content == b"hello"
    assert answer.headers["cache-control"] == "no-store"
