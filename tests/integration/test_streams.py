"""Nothing runs away (issue 16): event streams are capped per user (429 beyond), end when the session
or token behind them ends, and a client too far behind gets a fresh start instead of all history."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest

from orchestrator import auth
from orchestrator.db.engine import reading, writing
from orchestrator.events import Pending, append, last_id, publish, read_after
from tests.integration.conftest import Env, live_server
from tests.support import Event, sse

PASSWORD = "correct horse battery staple"
FLOW = """
    name: flow
    steps:
      - {id: first, action: set, values: {a: 1}}
      - {id: second, action: set, values: {b: 2}}
      - {id: third, action: set, values: {c: 3}}
"""


@pytest.fixture
def quick_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    """Heartbeats (when streams check their credentials) every 0.3 s instead of 15 s."""
    monkeypatch.setattr("web.app.HEARTBEAT_S", 0.3)


@contextlib.asynccontextmanager
async def session(url: str, name: str) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client signed in through the login form."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        answer = await client.post("/login", data={"username": name, "password": PASSWORD}, headers={"Origin": url})
        assert answer.status_code == 303, answer.text
        yield client


async def status_of(client: httpx.AsyncClient, path: str) -> int:
    """The status of a stream's answer, without waiting for a body that may never end."""
    async with client.stream("GET", path) as response:
        return response.status_code


async def stream_ends(client: httpx.AsyncClient, path: str, end: asyncio.Event, ended: asyncio.Event) -> int:
    """Open a stream, let the test end its credential (`end`), and return how many events came before
    the server closed it (the guard fails the test should it stay open)."""
    count = 0
    async with asyncio.timeout(20), client.stream("GET", path) as response:
        assert response.status_code == 200, await response.aread()
        end.set()
        async for _ in sse(response):
            count += 1
    ended.set()
    return count


async def test_a_user_gets_at_most_the_configured_streams_then_a_429_naming_the_limit(env: Env) -> None:
    token = await auth.create_token(env.svc.engine, "many", "viewer", "tests")
    other = await auth.create_token(env.svc.engine, "other", "viewer", "tests")
    async with live_server(replace(env.settings, sse_streams_per_user=2)) as url:
        mine = httpx.AsyncClient(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"})
        theirs = httpx.AsyncClient(base_url=url, timeout=30, headers={"Authorization": f"Bearer {other}"})
        async with mine, theirs:
            async with contextlib.AsyncExitStack() as open_streams:
                for path in ("/api/v1/events", "/api/v1/events"):
                    response = await open_streams.enter_async_context(mine.stream("GET", path))
                    assert response.status_code == 200
                async with mine.stream("GET", "/api/v1/events") as refused:
                    assert refused.status_code == 429
                    error = json.loads(await refused.aread())["error"]
                assert "2 event streams" in error and "ORCH_SSE_STREAMS_PER_USER" in error, error
                async with theirs.stream("GET", "/api/v1/events") as response:
                    assert response.status_code == 200  # the cap is per user
            async with asyncio.timeout(20):
                while True:  # the closed streams give their places back once the server sees them go
                    async with mine.stream("GET", "/api/v1/events") as response:
                        if response.status_code == 200:
                            break
                    await asyncio.sleep(0.1)


@pytest.mark.parametrize("how", ["logout", "password change"])
async def test_a_stream_ends_when_its_session_ends(env: Env, quick_heartbeat: None, how: str) -> None:
    await auth.add_user(env.svc.engine, "alice", "viewer", PASSWORD)
    async with live_server(env.settings) as url, session(url, "alice") as browser:
        page = await browser.get("/jobs")
        csrf = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page.text)
        assert csrf is not None
        ready, ended = asyncio.Event(), asyncio.Event()
        watching = asyncio.create_task(stream_ends(browser, "/api/v1/events", ready, ended))
        await asyncio.wait({watching, asyncio.ensure_future(ready.wait())}, return_when=asyncio.FIRST_COMPLETED)
        if how == "logout":
            async with httpx.AsyncClient(base_url=url, timeout=30, cookies=browser.cookies) as other_tab:
                out = await other_tab.post("/logout", data={"csrf_token": csrf.group(1)}, headers={"Origin": url})
                assert out.status_code == 303
        else:
            await auth.set_password(env.svc.engine, "alice", "another long password")
        await watching
        assert ended.is_set()
        assert await status_of(browser, "/api/v1/events") == 401


async def test_a_stream_ends_when_its_token_is_revoked(env: Env, quick_heartbeat: None) -> None:
    env.write(FLOW)
    token = await auth.create_token(env.svc.engine, "script", "viewer", "tests")
    job = await env.create("flow")
    [listed] = await auth.list_tokens(env.svc.engine)
    async with live_server(env.settings) as url:
        client = httpx.AsyncClient(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"})
        async with client:
            ready, ended = asyncio.Event(), asyncio.Event()
            watching = asyncio.create_task(stream_ends(client, f"/api/v1/jobs/{job['id']}/events", ready, ended))
            await asyncio.wait({watching, asyncio.ensure_future(ready.wait())}, return_when=asyncio.FIRST_COMPLETED)
            assert await auth.revoke_token(env.svc.engine, listed["id"])
            assert await watching == 1  # the snapshot, then the end
            assert await status_of(client, "/api/v1/events") == 401


async def first_events(client: httpx.AsyncClient, path: str, count: int, last: str | None = None) -> list[Event]:
    headers = {"Last-Event-ID": last} if last is not None else {}
    received: list[Event] = []
    async with asyncio.timeout(20), client.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200
        async for event in sse(response):
            received.append(event)
            if len(received) == count:
                return received
    raise AssertionError(f"the stream ended after {received}")


async def test_a_job_stream_too_far_behind_gets_a_snapshot_and_a_near_one_an_exact_replay(env: Env) -> None:
    job = await env.run(FLOW)
    async with reading(env.svc.engine) as conn:
        stored = [(e.id, e.type) for e in await read_after(conn, 0, job_id=job["id"])]
    assert len(stored) > 6
    token = await auth.create_token(env.svc.engine, "reader", "viewer", "tests")
    async with (
        live_server(replace(env.settings, sse_replay_max=5)) as url,
        httpx.AsyncClient(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as client,
    ):
        path = f"/api/v1/jobs/{job['id']}/events"
        [fresh] = await first_events(client, path, 1, last="0")
        assert (fresh.type, fresh.id) == ("snapshot", stored[-1][0])
        assert fresh.data["status"] == "completed" and len(fresh.data["steps"]) == 3
        [garbled] = await first_events(client, path, 1, last="9" * 5000)
        assert garbled.type == "snapshot"
        near = await first_events(client, path, 5, last=str(stored[-6][0]))
        assert [(e.id, e.type) for e in near] == stored[-5:]


async def test_the_all_jobs_stream_too_far_behind_resumes_at_the_newest_events(env: Env) -> None:
    async with writing(env.svc.engine) as conn:
        await append(conn, [Pending("j", "status", {"job_id": "j", "status": "running", "n": n}) for n in range(12)])
    async with reading(env.svc.engine) as conn:
        ids = [e.id for e in await read_after(conn, 0)]
        assert await last_id(conn) == ids[-1]
    token = await auth.create_token(env.svc.engine, "reader", "viewer", "tests")
    async with (
        live_server(replace(env.settings, sse_replay_max=4)) as url,
        httpx.AsyncClient(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as client,
    ):
        numbers = []
        headers = {"Last-Event-ID": "0"}
        async with asyncio.timeout(20), client.stream("GET", "/api/v1/events", headers=headers) as response:
            async for event in sse(response):
                numbers.append(event.data["n"])
                if len(numbers) == 4:  # the newest 4; then a live one
                    async with writing(env.svc.engine) as conn:
                        await append(conn, [Pending("j", "status", {"job_id": "j", "status": "completed", "n": 12})])
                    await publish(env.svc.redis, ["j"])
                if len(numbers) == 5:
                    break
        assert numbers == [8, 9, 10, 11, 12]
        near = await first_events(client, "/api/v1/events", 3, last=str(ids[8]))
        assert [e.data["n"] for e in near] == [9, 10, 11]  # within the bound: every event after it

        # the same from the events the web process holds in memory (those since it started)
        async with writing(env.svc.engine) as conn:
            await append(
                conn, [Pending("j", "status", {"job_id": "j", "status": "running", "n": n}) for n in range(13, 21)]
            )
        await publish(env.svc.redis, ["j"])
        async with reading(env.svc.engine) as conn:
            ids = [e.id for e in await read_after(conn, 0)]
        [last] = await first_events(client, "/api/v1/events", 1, last=str(ids[-2]))
        assert last.data["n"] == 20  # the web process has read them all
        held = await first_events(client, "/api/v1/events", 4, last=str(ids[12]))
        assert [e.data["n"] for e in held] == [17, 18, 19, 20]
