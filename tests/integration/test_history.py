"""The run-history API (SPEC §6) and the ingest API for runs made by other tools."""

from __future__ import annotations

import html as html_text
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from orchestrator.db import tables as t
from orchestrator.db.engine import writing
from orchestrator.db.tables import utcnow
from tests.integration.conftest import Env, http_client

RUNBOOK = """
name: stamps
steps:
  - {id: mark, name: Mark it, action: set, values: {n: 1}}
  - {id: out, action: export, format: json, data: {n: 1}, filename: n.json}
"""


@pytest.fixture
async def five(env: Env) -> list[str]:
    """Five finished jobs of `stamps`, created a minute apart, the third the longest."""
    env.write(RUNBOOK)
    ids = [(await env.create("stamps"))["id"] for _ in range(5)]
    await env.work()
    base = utcnow() - timedelta(hours=1)
    async with writing(env.svc.engine) as conn:
        for i, job_id in enumerate(ids):
            await conn.execute(
                update(t.jobs)
                .where(t.jobs.c.id == job_id)
                .values(created_at=base + timedelta(minutes=i), duration_s=10.0 if i == 2 else float(i))
            )
    return ids


async def test_history_pages_with_links_and_the_spec_shape(env: Env, five: list[str]) -> None:
    async with http_client(env.settings, role="viewer") as http:
        first = (await http.get("/api/v1/runbooks/stamps/history?limit=2")).json()
        assert (first["start"], first["count"], first["total"]) == (0, 2, 5)
        assert first["_links"]["self"]["href"] == "/api/v1/runbooks/stamps/history?start=0&limit=2&sort=-createdAt"
        assert first["_links"]["next"]["href"] == "/api/v1/runbooks/stamps/history?start=2&limit=2&sort=-createdAt"
        assert "prev" not in first["_links"]
        entries = first["_embedded"]["job-history"]
        assert [e["id"] for e in entries] == [five[4], five[3]]
        entry = entries[0]
        assert entry["success"] is True and entry["warnings"] is False and entry["runbook"] == "stamps"
        assert len(entry["duration"]) == 2 and entry["duration"][1] is not None
        assert entry["createdAt"].endswith("Z")
        assert entry["progress"] == [
            {
                "task": {"key": "set", "opts": {"id": "mark", "name": "Mark it"}},
                "result": {"key": "success", "success": True, "status": "success", "message": ""},
            },
            {
                "task": {"key": "export", "opts": {"id": "out", "name": "out"}},
                "result": {"key": "success", "success": True, "status": "success", "message": ""},
            },
        ]
        last = (await http.get(first["_links"]["next"]["href"].replace("start=2", "start=4"))).json()
        assert last["count"] == 1 and "next" not in last["_links"]
        assert last["_links"]["prev"]["href"].startswith("/api/v1/runbooks/stamps/history?start=2&limit=2")
        past = (await http.get("/api/v1/runbooks/stamps/history?start=50")).json()
        assert (past["count"], past["total"], past["_embedded"]["job-history"]) == (0, 5, [])

        oldest = (await http.get("/api/v1/runbooks/stamps/history?sort=createdAt")).json()
        assert [e["id"] for e in oldest["_embedded"]["job-history"]] == five
        longest = (await http.get("/api/v1/runbooks/stamps/history?sort=-duration&limit=1")).json()
        assert longest["_embedded"]["job-history"][0]["id"] == five[2]
        shortest = (await http.get("/api/v1/runbooks/stamps/history?sort=duration&limit=1")).json()
        assert shortest["_embedded"]["job-history"][0]["id"] == five[0]

        one = await http.get(f"/api/v1/runbooks/stamps/history/{five[1]}")
        assert one.status_code == 200 and one.json()["id"] == five[1]
        assert (await http.get("/api/v1/runbooks/stamps/history/nope")).status_code == 404
        assert (await http.get("/api/v1/runbooks/unknown/history")).status_code == 404


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "limit"), ("limit=201", "limit"), ("limit=x", "limit"), ("start=-1", "start"), ("sort=name", "sort")],
)
async def test_history_refuses_bad_paging_and_sorting_with_422(
    env: Env, five: list[str], query: str, field: str
) -> None:
    async with http_client(env.settings, role="viewer") as http:
        answer = await http.get(f"/api/v1/runbooks/stamps/history?{query}")
    assert answer.status_code == 422
    assert field in answer.json()["fields"]


async def test_deleting_a_history_entry_needs_job_edit_and_removes_its_files(env: Env, five: list[str]) -> None:
    folder = env.settings.artifacts_dir / five[0]
    assert any(folder.iterdir())
    async with http_client(env.settings, role="operator") as operator:
        refused = await operator.delete(f"/api/v1/runbooks/stamps/history/{five[0]}")
        assert refused.status_code == 403
    async with http_client(env.settings) as admin:
        gone = await admin.delete(f"/api/v1/runbooks/stamps/history/{five[0]}")
        assert gone.status_code == 204 and gone.content == b""
        assert (await admin.get(f"/api/v1/jobs/{five[0]}")).status_code == 404
        assert (await admin.get("/api/v1/runbooks/stamps/history")).json()["total"] == 4
        assert (await admin.delete(f"/api/v1/runbooks/stamps/history/{five[0]}")).status_code == 404
        queued = (await admin.post("/api/v1/runbooks/stamps/jobs", json={})).json()
        busy = await admin.delete(f"/api/v1/runbooks/stamps/history/{queued['id']}")
        assert busy.status_code == 409 and "cancel it" in busy.json()["error"]
    assert not folder.exists()


# -- ingest ----------------------------------------------------------------------------------

RUN = {
    "process": "invoice-bot",
    "source": "uipath",
    "external_id": "run-4711",
    "robot": "RPA-VM-07",
    "status": "Successful",
    "started_at": "2026-11-01T08:00:00Z",
    "finished_at": "2026-11-01T08:02:30Z",
    "summary": "2 of 3 invoices booked",
    "tags": ["finance", "nightly"],
    "data": {"batch": 17, "nested": {"ok": True}},
    "records": [
        {"sequence": 1, "record_id": "INV-1", "record_name": "ACME", "status": "success", "result": {"booked": 1}},
        {"sequence": 2, "record_id": "INV-2", "status": "failed", "error": "Vendor unknown"},
        {"sequence": 3, "record_id": 3, "status": "skipped", "processed_at": "2026-11-01T08:02:00Z"},
    ],
}


async def test_an_ingested_run_is_a_job_like_any_other_and_reposting_updates_it(env: Env) -> None:
    async with http_client(env.settings, role="operator") as http:
        created = await http.post("/api/v1/ingest/jobs", json=RUN)
        assert created.status_code == 201, created.text
        job = created.json()
        assert (job["runbook"], job["source"], job["external_id"], job["robot"]) == (
            "uipath/invoice-bot",  # a reported process is named within its source, apart from the runbooks
            "uipath",
            "run-4711",
            "RPA-VM-07",
        )
        assert job["status"] == "completed" and job["duration_s"] == 150.0
        assert job["record_counts"] == {"total": 3, "succeeded": 1, "failed": 1, "skipped": 1}
        assert [r["record_id"] for r in job["records"]] == ["INV-1", "INV-2", "3"]
        assert job["records"][1]["error"] == "Vendor unknown"
        assert job["data"] == RUN["data"] and job["tags"] == ["finance", "nightly"]

        again = await http.post(
            "/api/v1/ingest/jobs",
            json={
                **RUN,
                "summary": "3 of 3 booked",
                "records": [{"sequence": 2, "record_id": "INV-2", "status": "success"}],
            },
        )
        assert again.status_code == 200
        assert again.json()["id"] == job["id"]
        assert again.json()["summary"] == "3 of 3 booked"
        assert again.json()["record_counts"] == {"total": 3, "succeeded": 2, "failed": 0, "skipped": 1}

        listed = (await http.get("/api/v1/jobs?source=uipath")).json()
        assert [i["id"] for i in listed["items"]] == [job["id"]]
        found = (await http.get("/api/v1/jobs?q=run-47")).json()
        assert [i["id"] for i in found["items"]] == [job["id"]]


async def test_a_running_ingested_job_is_patched_and_its_events_are_streamed(env: Env) -> None:
    async with http_client(env.settings, role="operator") as http:
        start = {k: RUN[k] for k in ("process", "source", "external_id", "started_at")} | {"status": "in_progress"}
        job = (await http.post("/api/v1/ingest/jobs", json=start)).json()
        assert job["status"] == "running"
        done = await http.patch(
            f"/api/v1/ingest/jobs/{job['id']}",
            json={"status": "faulted", "error": "Portal down", "finished_at": "2026-11-01T08:01:00Z"},
        )
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "failed" and done.json()["error"]["message"] == "Portal down"
        assert done.json()["duration_s"] == 60.0
        moved = await http.patch(f"/api/v1/ingest/jobs/{job['id']}", json={"external_id": "other"})
        assert moved.status_code == 422 and "external_id" in moved.json()["fields"]
    from orchestrator.db.engine import reading
    from orchestrator.events import read_after

    async with reading(env.svc.engine) as conn:
        kinds = [(e.type, e.data.get("status")) for e in await read_after(conn, 0, job_id=job["id"])]
    assert kinds == [("status", "running"), ("status", "failed"), ("report", "failed")]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"status": "exploded"}, "status"),
        ({"process": None}, "process"),
        ({"external_id": ""}, "external_id"),
        ({"started_at": "yesterday"}, "started_at"),
        ({"finished_at": "2026-11-01T07:00:00Z"}, "finished_at"),
        ({"tags": "finance"}, "tags"),
        ({"data": [1]}, "data"),
        ({"records": [{"sequence": 1, "record_id": "a", "status": "meh"}]}, "records[0].status"),
        ({"records": [{"sequence": 1, "status": "success"}]}, "records[0].record_id"),
        ({"records": [{"sequence": 1, "record_id": "a", "status": "success"}] * 2}, "records[1].sequence"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_a_bad_report_is_a_422_naming_the_field_and_stores_nothing(
    env: Env, change: dict[str, Any], field: str
) -> None:
    async with http_client(env.settings, role="operator") as http:
        answer = await http.post("/api/v1/ingest/jobs", json={**RUN, **change})
        assert answer.status_code == 422, answer.text
        assert field in answer.json()["fields"]
        if field == "status":
            assert "successful" in answer.json()["fields"]["status"]  # the valid values are listed
        assert (await http.get("/api/v1/jobs")).json()["total"] == 0


async def test_files_are_attached_to_an_ingested_job_and_downloaded(env: Env) -> None:
    env.write(RUNBOOK)
    async with http_client(env.settings, role="operator") as http:
        job = (await http.post("/api/v1/ingest/jobs", json=RUN)).json()
        sent = await http.post(
            f"/api/v1/ingest/jobs/{job['id']}/files",
            files=[
                ("file", ("../../log.txt", b"robot log\n", "text/plain")),
                ("file", ("shot.png", b"\x89PNG", "image/png")),
            ],
        )
        assert sent.status_code == 201, sent.text
        files = sent.json()["files"]
        assert [(f["name"], f["size"], f["mime_type"], f["kind"]) for f in files] == [
            ("log.txt", 10, "text/plain", "attachment"),
            ("shot.png", 4, "image/png", "attachment"),
        ]
        assert all(f["created_at"] for f in files)
        log = await http.get(files[0]["url"])
        assert log.content == b"robot log\n" and log.headers["content-disposition"].startswith("attachment")
        whole = (await http.get(f"/api/v1/jobs/{job['id']}")).json()
        assert {a["id"] for a in whole["artifacts"]} == {f["id"] for f in files}
        empty = await http.post(f"/api/v1/ingest/jobs/{job['id']}/files", files=[])
        assert empty.status_code == 422
        ours = (await http.post("/api/v1/runbooks/stamps/jobs", json={})).json()
        refused = await http.post(f"/api/v1/ingest/jobs/{ours['id']}/files", files=[("file", ("x.txt", b"x"))])
        assert refused.status_code == 404


async def test_ingesting_needs_job_run(env: Env) -> None:
    async with http_client(env.settings, role="viewer") as http:
        assert (await http.post("/api/v1/ingest/jobs", json=RUN)).status_code == 403
    async with http_client(env.settings, role=None) as http:
        assert (await http.post("/api/v1/ingest/jobs", json=RUN)).status_code == 401


# -- the job list's filters ------------------------------------------------------------------


async def test_the_job_list_filters_by_tag_source_search_and_dates_with_true_totals(any_db_env: Env) -> None:
    env = any_db_env
    env.write(RUNBOOK)
    async with http_client(env.settings, role="operator") as http:
        made = {}
        for name, tags in (("plain", []), ("odd", ["a_b"]), ("near", ["axb"]), ("both", ["a_b", "eu"])):
            job = (await http.post("/api/v1/runbooks/stamps/jobs", json={"tags": tags})).json()
            made[name] = job["id"]
        report = {**RUN, "external_id": "EXT-99", "tags": ["eu"]}
        made["ingested"] = (await http.post("/api/v1/ingest/jobs", json=report)).json()["id"]

        async def ids(query: str) -> tuple[set[str], int]:
            page = (await http.get(f"/api/v1/jobs?{query}")).json()
            return {i["id"] for i in page["items"]}, page["total"]

        assert await ids("tag=a_b") == ({made["odd"], made["both"]}, 2)  # _ is not a wildcard
        assert await ids("tag=eu&limit=1") == ({made["both"]}, 2)  # newest first; the total counts past the page
        assert await ids("source=uipath") == ({made["ingested"]}, 1)
        assert await ids("q=ext-9") == ({made["ingested"]}, 1)
        assert (await ids("q=stamps"))[1] == 4
        assert (await ids("from=2026-11-01&to=2026-11-01"))[0] == {made["ingested"]}  # a bare `to` is that whole day
        assert (await ids("to=2026-10-31"))[1] == 0
        bad = await http.get("/api/v1/jobs?from=last-week")
        assert bad.status_code == 422 and "from" in bad.json()["fields"]


async def test_an_ingested_job_cannot_be_rerun_here_and_odd_action_bodies_are_422(env: Env) -> None:
    async with http_client(env.settings, role="admin") as http:
        job = (await http.post("/api/v1/ingest/jobs", json=RUN)).json()
        again = await http.post(f"/api/v1/jobs/{job['id']}/rerun")
        assert again.status_code == 409 and "uipath" in again.json()["error"]
        odd = await http.post(f"/api/v1/jobs/{job['id']}/cancel", json={"expected_status": {}})
        assert odd.status_code == 422 and "expected_status" in odd.json()["fields"]


async def test_an_ingested_jobs_page_shows_its_summary_records_files_tags_and_data(env: Env) -> None:
    async with http_client(env.settings, role="viewer") as viewer, http_client(env.settings, role="operator") as op:
        job = (await op.post("/api/v1/ingest/jobs", json=RUN)).json()
        await op.post(f"/api/v1/ingest/jobs/{job['id']}/files", files=[("file", ("robot.log", b"ok", "text/plain"))])
        page = await viewer.get(f"/jobs/{job['id']}", headers={"Accept": "text/html"})
    assert page.status_code == 200
    html = page.text
    for shown in (
        "invoice-bot",
        "uipath",
        "RPA-VM-07",
        "run-4711",
        "2 of 3 invoices booked",
        "INV-2",
        "Vendor unknown",
    ):
        assert shown in html, shown
    assert "robot.log" in html and "finance" in html
    assert '"batch": 17' in html_text.unescape(html)  # the custom data, pretty-printed


async def test_a_draft_runs_only_as_a_marked_preview_left_out_of_the_history(env: Env) -> None:
    env.write(RUNBOOK.replace("name: stamps\n", "name: stamps\nstatus: draft\n"))
    async with http_client(env.settings, role="operator") as http:
        refused = await http.post("/api/v1/runbooks/stamps/jobs", json={})
        assert refused.status_code == 400 and "draft" in refused.json()["error"]
        trial = await http.post("/api/v1/runbooks/stamps/jobs", json={"preview": True})
        assert trial.status_code == 201 and trial.json()["preview"] is True
        page = (await http.get(f"/jobs/{trial.json()['id']}", headers={"Accept": "text/html"})).text
        assert ">preview</span>" in page
        plain = (await http.get("/api/v1/runbooks/stamps/history")).json()
        assert plain["total"] == 0
        both = (await http.get("/api/v1/runbooks/stamps/history?previews=include")).json()
        assert [e["id"] for e in both["_embedded"]["job-history"]] == [trial.json()["id"]]
        assert "previews=include" in both["_links"]["self"]["href"]
