"""Workers you can see: real `orchestrator worker` processes appear in GET /api/v1/workers and on the
/workers page with their pid, concurrency and the job they run; one killed with SIGKILL shows as lost,
then disappears; one stopped with SIGTERM is gone at once. Short intervals come from the environment."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from typing import Any

import httpx
from playwright.async_api import expect

from orchestrator import auth, workers
from tests.integration.conftest import Env, bearer, http_client, live_server, orch_process, until
from tests.support import signed_in_page

SLEEPER = """
name: sleeper
steps:
  - {id: nap, action: sleep, seconds: 60, timeout: 120}
"""
#: A worker shows as lost after 4 s without a beat (it beats every 2 s) and is gone after 9 s.
SHORT = {"ORCH_WORKER_LOST_S": "4", "ORCH_WORKER_GONE_S": "9"}


async def listed(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    answer = await http.get("/api/v1/workers")
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def worker_with(http: httpx.AsyncClient, pid: int, **expected: Any) -> dict[str, Any]:
    """Poll the list until the worker of `pid` shows these fields (a guard against hangs, not a speed check)."""
    async with asyncio.timeout(60):
        while True:
            found = [w for w in await listed(http) if w["pid"] == pid]
            if found and all(found[0][k] == v for k, v in expected.items()):
                return found[0]
            await asyncio.sleep(0.2)


async def test_a_killed_worker_shows_with_its_job_then_as_lost_then_not_at_all(env: Env) -> None:
    job = await env.create(env.write(SLEEPER))
    async with http_client(env.settings, role="viewer") as http:
        with orch_process(env, "worker", ORCH_WORKER_CONCURRENCY="3", **SHORT) as process:
            await until(env, job["id"], "running")
            shown = await worker_with(http, process.pid, running_jobs=[job["id"]])
            assert shown["status"] == "live"
            assert shown["host"] == socket.gethostname()
            assert shown["id"] == f"{socket.gethostname()}:{process.pid}"
            assert shown["concurrency"] == 3 and shown["busy_slots"] == 1
            assert shown["version"] == workers.version() != "unknown"
            assert shown["started_at"] <= shown["last_seen_at"]
            running = (await http.get(f"/api/v1/jobs/{job['id']}")).json()
            assert running["robot"] == shown["id"]  # the job names the worker the list shows

            os.killpg(process.pid, signal.SIGKILL)  # no clean stop: it just stops beating
            process.wait()
            lost = await worker_with(http, process.pid, status="lost")
            assert lost["running_jobs"] == [job["id"]]  # what it ran when it was last seen
            async with asyncio.timeout(60):
                while any(w["pid"] == process.pid for w in await listed(http)):
                    await asyncio.sleep(0.2)


async def test_a_worker_stopped_with_sigterm_is_gone_at_once(env: Env) -> None:
    async with http_client(env.settings, role="viewer") as http:
        with orch_process(env, "worker", ORCH_WORKER_CONCURRENCY="2") as process:
            await worker_with(http, process.pid, status="live", running_jobs=[])
            process.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(process.wait, 30) == 0
            assert [w for w in await listed(http) if w["pid"] == process.pid] == []


async def test_the_workers_page_updates_itself_and_the_list_needs_sign_in(env: Env) -> None:
    await auth.add_user(env.svc.engine, "vera", "viewer", "vera-password")
    async with http_client(env.settings, role=None) as anonymous:
        refused = await anonymous.get("/api/v1/workers")
        assert refused.status_code == 401 and refused.json()["error"]
        assert (await anonymous.get("/workers/rows")).status_code == 401
        page_answer = await anonymous.get("/workers", headers={"Accept": "text/html"})
        assert page_answer.status_code == 303 and page_answer.headers["location"].startswith("/login")
    headers = await bearer(env.settings, "viewer")
    async with live_server(env.settings) as url, signed_in_page(url, "vera", "vera-password") as page:
        await page.goto(f"{url}/workers")
        await expect(page.get_by_role("heading", name="Workers")).to_be_visible()
        await expect(page.get_by_text("No worker is running")).to_be_visible()
        with orch_process(env, "worker", ORCH_WORKER_CONCURRENCY="2") as process:
            row = page.locator(f'tr[data-worker-id="{socket.gethostname()}:{process.pid}"]')
            await expect(row).to_be_visible(timeout=30_000)  # no reload: the page fetches its rows again
            await expect(row.locator("[data-cell=pid]")).to_have_text(str(process.pid))
            await expect(row.locator("[data-cell=slots]")).to_have_text("0 / 2")
            await expect(row.locator("[data-cell=status]")).to_have_text("live")
            async with httpx.AsyncClient(base_url=url, headers=headers) as api:
                assert [w["pid"] for w in await listed(api)] == [process.pid]
            process.send_signal(signal.SIGTERM)
            await asyncio.to_thread(process.wait, 30)
            await expect(row).to_have_count(0, timeout=30_000)
            await expect(page.get_by_text("No worker is running")).to_be_visible()
