"""Nothing is lost, nothing is left behind (issue 16, points 15, 17, 18 and 19): scheduled jobs Redis
forgot, files of refused and re-run jobs, the audit log of deleted jobs, reported runs kept apart."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta

from orchestrator import jobs, queue
from orchestrator.jobs import JobRequest
from tests.integration.conftest import Env, http_client, running_worker, step, until

LATER = """
name: later
steps:
  - {id: one, action: set, values: {a: 1}}
"""


async def test_a_scheduled_job_whose_redis_entry_was_lost_still_runs(env: Env) -> None:
    env.write(LATER)
    when = datetime.now(UTC) + timedelta(seconds=1)
    async with http_client(env.settings, role="operator") as http:
        later = (await http.post("/api/v1/runbooks/later/jobs", json={"run_at": when.isoformat()})).json()
    assert later["status"] == "scheduled"
    await env.svc.redis.flushall()  # Redis restarted without its data: the deferred entry is gone
    await asyncio.sleep(1.5)
    assert await queue.reconcile(env.svc.engine, env.svc.redis, older_than=timedelta(0)) == 1
    async with running_worker(env):
        done = await until(env, later["id"], "completed", "failed")
    assert done["status"] == "completed"


UPLOAD = """
name: upload-input
inputs:
  attachment: {type: file, required: true}
  order: {type: string}
settings: {dedupe: inputs}
steps:
  - {id: open, action: goto, url: "{{ site.url }}/upload.html", timeout: 10}
  - {id: upload, action: upload, selector: "#file", file: "{{ inputs.attachment }}", timeout: 10}
  - {id: read, action: extract, selector: "#uploaded", save_as: uploaded, timeout: 10}
"""


def _file(content: bytes) -> dict[str, str]:
    return {"filename": "note.txt", "content_type": "text/plain", "data_base64": base64.b64encode(content).decode()}


async def test_a_refused_duplicate_leaves_no_files_and_a_rerun_carries_its_file_inputs(env: Env) -> None:
    env.write(UPLOAD)
    content = b"the operator's note\n"
    body = {"inputs": {"attachment": _file(content), "order": "A-1"}}
    async with http_client(env.settings, role="operator") as http:
        first = await http.post("/api/v1/runbooks/upload-input/jobs", json=body)
        assert first.status_code == 201, first.text
        refused = await http.post("/api/v1/runbooks/upload-input/jobs", json=body)
        assert refused.status_code == 409  # settings.dedupe: the first is still queued
        folders = sorted(p.name for p in env.settings.artifacts_dir.iterdir())
        assert folders == [first.json()["id"]]  # the refused job's file was not left behind
        await env.work()
        again = await http.post(f"/api/v1/jobs/{first.json()['id']}/rerun")
        assert again.status_code == 201, again.text
        await env.work()
        done = (await http.get(f"/api/v1/jobs/{again.json()['id']}")).json()
        [attachment] = [a for a in done["artifacts"] if a["kind"] == "attachment"]
        assert (await http.get(attachment["url"])).content == content  # a copy of its own
    assert done["status"] == "completed", done["error"]
    assert step(done, "read")["captured"]["uploaded"] == f"note.txt|{len(content)}|{content.decode()}".strip()


async def test_deleting_a_job_keeps_its_audit_log_and_says_who_deleted_it(env: Env) -> None:
    env.write(LATER)
    job = await env.create("later")
    await env.work()
    async with http_client(env.settings, role="admin") as admin, http_client(env.settings, "viewer") as viewer:
        await admin.post(f"/api/v1/jobs/{job['id']}/cancel")  # refused (completed): still an audit entry
        assert (await admin.delete(f"/api/v1/runbooks/later/history/{job['id']}")).status_code == 204
        assert (await admin.get(f"/api/v1/jobs/{job['id']}")).status_code == 404
        log = (await admin.get(f"/api/v1/audit?job_id={job['id']}")).json()
        assert (await viewer.get("/api/v1/audit")).status_code == 403
    assert [(e["action"], e["outcome"], e["actor"]) for e in log["items"]] == [
        ("cancel", "refused", "token:admin"),
        ("delete", "ok", "token:admin"),
    ]
    assert log["items"][1]["comment"].startswith(f"Deleted job {job['id']} of later (completed, created ")


REPORT = {"process": "later", "source": "uipath", "external_id": "R-1", "status": "suspended"}


async def test_a_reported_run_never_passes_for_a_runbook_and_is_never_acted_on(env: Env) -> None:
    env.write(LATER)
    ours = await env.create("later")
    async with http_client(env.settings, role="admin") as http:
        reported = (await http.post("/api/v1/ingest/jobs", json=REPORT)).json()
        assert reported["runbook"] == "uipath/later" and reported["status"] == "waiting_for_approval"
        approve = await http.post(f"/api/v1/jobs/{reported['id']}/approve", json={"comment": "looks fine"})
        assert approve.status_code == 409 and "uipath" in approve.json()["error"]
        assert (await http.post(f"/api/v1/jobs/{reported['id']}/cancel")).status_code == 409
        history = (await http.get("/api/v1/runbooks/later/history")).json()
        assert [e["id"] for e in history["_embedded"]["job-history"]] == [ours["id"]]
        listed = (await http.get("/api/v1/jobs?runbook=later")).json()
        assert [i["id"] for i in listed["items"]] == [ours["id"]]
        page = await http.get(f"/jobs/{reported['id']}", headers={"Accept": "text/html"})
    assert ">Approve<" not in page.text and ">Cancel<" not in page.text
    assert (await jobs.get(env.svc, reported["id"]))["audit"][0]["outcome"] == "refused: reported run"


async def test_the_demo_site_is_served_with_the_apps_content_security_policy(env: Env) -> None:
    (env.settings.runbooks_dir / "demo").mkdir()
    (env.settings.runbooks_dir / "demo" / "index.html").write_text("<!doctype html><title>demo</title>")
    async with http_client(env.settings, role=None) as http:
        page = await http.get("/demo/index.html")
        app = await http.get("/login")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == app.headers["content-security-policy"]
    assert "script-src 'self'" in page.headers["content-security-policy"]


async def test_internal_idempotency_keys_are_out_of_every_callers_reach(env: Env) -> None:
    env.write(LATER)
    internal = JobRequest(idempotency_key="schedule:x:1", internal=True, actor="schedule:x")
    mine, _ = await jobs.create(env.svc, "later", internal)
    async with http_client(env.settings, role="operator") as http:
        forged = await http.post("/api/v1/runbooks/later/jobs", json={"idempotency_key": "schedule:x:1"})
    assert forged.status_code == 201 and forged.json()["id"] != mine["id"]
    again, created = await jobs.create(env.svc, "later", internal)
    assert not created and again["id"] == mine["id"]
