"""The JSON API over HTTP: creating jobs (422 naming bad fields), listing, artifacts, health, cancel."""

from __future__ import annotations

import base64
import csv
import io

from orchestrator.config import Settings
from tests.integration.conftest import Env, http_client, step

TYPED = """
    name: typed
    inputs:
      customer: {type: string, required: true}
      count: {type: integer, minimum: 1, maximum: 10}
      mode: {type: string, enum: [fast, careful], default: fast}
      email: {type: string, pattern: "[^@]+@[^@]+"}
      token: {type: string, secret: true}
    steps:
      - {action: set, values: {a: 1}}
"""

QUICK = """
    name: quick
    steps:
      - {action: set, values: {a: 1}}
"""

EXPORT = """
    name: exporter
    steps:
      - action: export
        format: csv
        data: [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 5}]
        filename: stock.csv
"""


async def test_healthz_answers_200_when_database_and_redis_answer(settings: Settings) -> None:
    async with http_client(settings) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "redis": "ok"}


async def test_creating_a_job_with_bad_inputs_is_a_422_naming_every_bad_field(env: Env) -> None:
    env.write(TYPED)
    async with http_client(env.settings) as client:
        response = await client.post(
            "/api/v1/runbooks/typed/jobs",
            json={"inputs": {"count": 0, "mode": "reckless", "email": "nobody", "colour": "red"}},
        )
        assert response.status_code == 422
        body = response.json()
        assert set(body["fields"]) == {"customer", "count", "mode", "email", "colour"}
        assert "required" in body["fields"]["customer"]
        assert "at least 1" in body["fields"]["count"]
        assert "fast" in body["fields"]["mode"] and "careful" in body["fields"]["mode"]
        assert "pattern" in body["fields"]["email"]
        assert "not an input" in body["fields"]["colour"]
        assert isinstance(body["error"], str) and body["error"]
        listed = (await client.get("/api/v1/jobs")).json()
        assert listed["total"] == 0


async def test_a_bad_request_body_field_is_named(env: Env) -> None:
    env.write(QUICK)
    async with http_client(env.settings) as client:
        response = await client.post(
            "/api/v1/runbooks/quick/jobs", json={"inputs": {}, "priority": "urgent", "colour": 1}
        )
        assert response.status_code == 422
        assert set(response.json()["fields"]) == {"priority", "colour"}


async def test_creating_a_job_answers_201_with_the_job(env: Env) -> None:
    env.write(TYPED)
    async with http_client(env.settings) as client:
        response = await client.post(
            "/api/v1/runbooks/typed/jobs",
            json={"inputs": {"customer": "ACME", "count": "3", "token": "s3cret"}, "tags": ["nightly"]},
        )
        assert response.status_code == 201
        job = response.json()
        assert job["status"] == "queued"
        assert job["runbook"] == "typed"
        assert job["runbook_version"] == 1
        assert job["inputs"] == {"customer": "ACME", "count": 3, "mode": "fast", "email": None, "token": "********"}
        assert job["tags"] == ["nightly"]
        fetched = await client.get(f"/api/v1/jobs/{job['id']}")
        assert fetched.status_code == 200
        assert fetched.json()["id"] == job["id"]
        assert "s3cret" not in fetched.text


async def test_an_unknown_job_or_runbook_is_a_404_with_an_error(settings: Settings) -> None:
    async with http_client(settings) as client:
        job = await client.get("/api/v1/jobs/nope")
        runbook = await client.post("/api/v1/runbooks/nope/jobs", json={})
    assert job.status_code == 404
    assert "nope" in job.json()["error"]
    assert runbook.status_code == 404
    assert "nope" in runbook.json()["error"]


async def test_the_jobs_list_filters_by_status_and_runbook_and_pages(env: Env) -> None:
    env.write(QUICK)
    env.write(TYPED)
    async with http_client(env.settings) as client:
        quick = [(await client.post("/api/v1/runbooks/quick/jobs", json={})).json()["id"] for _ in range(3)]
        typed = (await client.post("/api/v1/runbooks/typed/jobs", json={"inputs": {"customer": "x"}})).json()["id"]
        cancelled = await client.post(f"/api/v1/jobs/{quick[0]}/cancel")
        assert cancelled.status_code == 200
        await env.work()

        everything = (await client.get("/api/v1/jobs")).json()
        assert everything["total"] == 4
        assert everything["count"] == 4
        assert {j["id"] for j in everything["items"]} == {*quick, typed}

        done = (await client.get("/api/v1/jobs", params={"status": "completed"})).json()
        assert {j["id"] for j in done["items"]} == {quick[1], quick[2], typed}
        assert all(j["status"] == "completed" for j in done["items"])

        stopped = (await client.get("/api/v1/jobs", params={"status": "cancelled"})).json()
        assert [j["id"] for j in stopped["items"]] == [quick[0]]

        both = (await client.get("/api/v1/jobs", params={"status": "cancelled,completed"})).json()
        assert both["total"] == 4

        of_quick = (await client.get("/api/v1/jobs", params={"runbook": "quick", "status": "completed"})).json()
        assert {j["id"] for j in of_quick["items"]} == {quick[1], quick[2]}
        assert of_quick["total"] == 2

        first = (await client.get("/api/v1/jobs", params={"limit": 3, "start": 0})).json()
        second = (await client.get("/api/v1/jobs", params={"limit": 3, "start": 3})).json()
        assert (first["total"], first["start"], first["count"]) == (4, 0, 3)
        assert (second["total"], second["start"], second["count"]) == (4, 3, 1)
        assert {j["id"] for j in first["items"]} | {j["id"] for j in second["items"]} == {*quick, typed}

        bad = await client.get("/api/v1/jobs", params={"limit": "many"})
        assert bad.status_code == 422
        assert "limit" in bad.json()["fields"]


async def test_an_artifact_downloads_with_its_content_and_file_name(env: Env) -> None:
    env.write(EXPORT)
    async with http_client(env.settings) as client:
        created = (await client.post("/api/v1/runbooks/exporter/jobs", json={})).json()
        await env.work()
        job = (await client.get(f"/api/v1/jobs/{created['id']}")).json()
        assert job["status"] == "completed"
        [exported] = job["artifacts"]
        assert exported["kind"] == "export"

        response = await client.get(exported["url"])
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        disposition = response.headers["content-disposition"]
        assert disposition.startswith("attachment")
        assert 'filename="stock.csv"' in disposition
        assert list(csv.DictReader(io.StringIO(response.text))) == [
            {"sku": "A-1", "qty": "2"},
            {"sku": "B-2", "qty": "5"},
        ]
        assert int(response.headers["content-length"]) == exported["size"]

        missing = await client.get(f"/api/v1/jobs/{job['id']}/artifacts/nope")
        assert missing.status_code == 404
        assert "nope" in missing.json()["error"]


async def test_cancelling_a_queued_job_then_cancelling_again_is_a_409(env: Env) -> None:
    env.write(QUICK)
    async with http_client(env.settings) as client:
        job = (await client.post("/api/v1/runbooks/quick/jobs", json={})).json()
        assert job["status"] == "queued"

        response = await client.post(f"/api/v1/jobs/{job['id']}/cancel", json={"comment": "not today"})
        assert response.status_code == 200
        cancelled = response.json()
        assert cancelled["status"] == "cancelled"
        assert cancelled["finished_at"] is not None
        assert [(a["actor"], a["action"], a["comment"]) for a in cancelled["audit"]] == [
            ("token:admin", "cancel", "not today")
        ]

        again = await client.post(f"/api/v1/jobs/{job['id']}/cancel")
        assert again.status_code == 409
        body = again.json()
        assert body["status"] == "cancelled"
        assert body["allowed_actions"] == []
        assert "cancel" in body["error"]

        await env.work()  # the worker finds the job cancelled and leaves it alone
        after = (await client.get(f"/api/v1/jobs/{job['id']}")).json()
        assert after["status"] == "cancelled"
        assert after["started_at"] is None
        assert all(s["status"] != "success" for s in after["steps"])


async def test_an_action_not_allowed_now_is_a_409_listing_the_allowed_actions(env: Env) -> None:
    env.write(QUICK)
    async with http_client(env.settings) as client:
        job = (await client.post("/api/v1/runbooks/quick/jobs", json={})).json()
        response = await client.post(f"/api/v1/jobs/{job['id']}/approve")
        assert response.status_code == 409
        assert response.json()["status"] == "queued"
        assert response.json()["allowed_actions"] == ["cancel"]
        unknown = await client.post(f"/api/v1/jobs/{job['id']}/explode")
        assert unknown.status_code == 422


async def test_the_same_idempotency_key_returns_the_same_job(env: Env) -> None:
    env.write(QUICK)
    async with http_client(env.settings) as client:
        first = await client.post("/api/v1/runbooks/quick/jobs", json={"idempotency_key": "order-42"})
        second = await client.post("/api/v1/runbooks/quick/jobs", json={"idempotency_key": "order-42"})
        listed = (await client.get("/api/v1/jobs")).json()
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert listed["total"] == 1


async def test_a_job_for_later_is_scheduled_and_can_be_cancelled(env: Env) -> None:
    env.write(QUICK)
    async with http_client(env.settings) as client:
        created = await client.post("/api/v1/runbooks/quick/jobs", json={"run_at": "2999-01-01T08:00:00Z"})
        assert created.status_code == 201
        job = created.json()
        assert job["status"] == "scheduled"
        assert job["scheduled_at"] == "2999-01-01T08:00:00Z"
        cancelled = await client.post(f"/api/v1/jobs/{job['id']}/cancel")
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "cancelled"


UPLOAD_INPUT = """
    name: upload-input
    inputs:
      attachment: {type: file, required: true}
    steps:
      - {id: open, action: goto, url: "{{ site.url }}/upload.html", timeout: 10}
      - {id: upload, action: upload, selector: "#file", file: "{{ inputs.attachment }}", timeout: 10}
      - {id: read, action: extract, selector: "#uploaded", save_as: uploaded, timeout: 10}
"""


async def test_a_file_input_uploaded_with_the_job_is_stored_and_can_be_uploaded_to_a_page(env: Env) -> None:
    # the run form of /runbooks/{name} sends a file input this way (web/static/app.js, readFileAsBase64)
    content = b"hello from the operator\n"
    env.write(UPLOAD_INPUT)
    async with http_client(env.settings) as client:
        created = await client.post(
            "/api/v1/runbooks/upload-input/jobs",
            json={
                "inputs": {
                    "attachment": {
                        "filename": "note.txt",
                        "content_type": "text/plain",
                        "data_base64": base64.b64encode(content).decode(),
                    }
                }
            },
        )
        assert created.status_code == 201, created.text
        await env.work()
        job = (await client.get(f"/api/v1/jobs/{created.json()['id']}")).json()
        [attachment] = [a for a in job["artifacts"] if a["kind"] == "attachment"]
        assert attachment["name"] == "note.txt"
        assert (await client.get(attachment["url"])).content == content
    assert job["status"] == "completed", job["error"]
    assert step(job, "read")["captured"]["uploaded"] == f"note.txt|{len(content)}|{content.decode()}".strip()
