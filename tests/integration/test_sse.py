"""Events: stored in order, streamed over a real HTTP connection, replayed exactly after Last-Event-ID."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from orchestrator.db.engine import reading, writing
from orchestrator.events import Pending, append, publish, read_after
from tests.integration.conftest import Env, bearer, live_server
from tests.support import Event, sse

FLOW = """
    name: flow
    steps:
      - {id: first, action: set, values: {a: 1}}
      - {id: nap, action: sleep, seconds: 0.1}
      - {id: second, action: set, values: {b: 2}}
"""


async def read_until_report(
    http: httpx.AsyncClient,
    url: str,
    headers: dict[str, str] | None = None,
    job_id: str | None = None,
    started: asyncio.Event | None = None,
) -> list[Event]:
    """Events of one stream up to and including the report (of `job_id`, when given)."""
    received: list[Event] = []
    async with asyncio.timeout(30), http.stream("GET", url, headers=headers or {}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        if started is not None:
            started.set()
        async for event in sse(response):
            received.append(event)
            if event.type == "report" and (job_id is None or event.data["job_id"] == job_id):
                return received
    raise AssertionError(f"the stream ended without a report: {received}")


async def connected_or_failed(reader: asyncio.Task[Any], connected: asyncio.Event) -> None:
    """Wait until the reader is connected; raise its error if it failed first."""
    waiter = asyncio.ensure_future(connected.wait())
    try:
        await asyncio.wait({reader, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if reader.done():
        reader.result()
    assert connected.is_set(), "the event stream did not connect"


async def stored(env: Env, job_id: str, after: int = 0) -> list[tuple[int, str]]:
    async with reading(env.svc.engine) as conn:
        return [(e.id, e.type) for e in await read_after(conn, after, job_id=job_id)]


async def test_a_job_s_events_are_stored_in_order_ending_with_the_report(env: Env) -> None:
    job = await env.run(FLOW)
    async with reading(env.svc.engine) as conn:
        events = await read_after(conn, 0, job_id=job["id"])
    ids = [e.id for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [e.data["status"] for e in events if e.type == "status"] == ["queued", "running", "completed"]
    finals = [
        (e.data["step"]["id"], e.data["step"]["status"])
        for e in events
        if e.type == "step" and e.data["step"]["status"] != "running"
    ]
    assert finals == [("first", "success"), ("nap", "success"), ("second", "success")]
    # a client that stops at the report (the CLI's --follow, the job page) must have seen everything
    assert events[-1].type == "report", [(e.id, e.type) for e in events]
    assert events[-1].data["status"] == "completed"
    assert events[-1].data["metrics"]["steps_succeeded"] == 3


async def test_the_job_stream_sends_a_snapshot_then_live_events_and_replays_exactly_after_last_event_id(
    env: Env,
) -> None:
    env.write(FLOW)
    async with (
        live_server(env.settings) as base,
        httpx.AsyncClient(base_url=base, timeout=30, headers=await bearer(env.settings)) as http,
    ):
        created = await http.post("/api/v1/runbooks/flow/jobs", json={})
        assert created.status_code == 201
        job_id = created.json()["id"]
        url = f"/api/v1/jobs/{job_id}/events"

        connected = asyncio.Event()
        reader = asyncio.create_task(read_until_report(http, url, started=connected))
        await connected_or_failed(reader, connected)
        await env.work()
        live = await reader

        snapshot, rest = live[0], live[1:]
        assert snapshot.type == "snapshot"
        assert snapshot.data["id"] == job_id
        assert snapshot.data["status"] == "queued"
        everything = await stored(env, job_id)
        assert snapshot.id == everything[0][0]  # the id of the last event when it connected: "queued"
        report_id = rest[-1].id
        assert [(e.id, e.type) for e in rest] == [(i, t) for i, t in everything if snapshot.id < i <= report_id]
        assert rest[0].type == "status" and rest[0].data["status"] == "running"
        assert rest[-1].type == "report" and rest[-1].data["status"] == "completed"
        assert {e.type for e in rest} == {"status", "step", "report"}

        middle = rest[2].id
        replay = await read_until_report(http, url, headers={"Last-Event-ID": str(middle)})
        assert replay[0].type != "snapshot"
        assert [(e.id, e.type, e.data) for e in replay] == [(e.id, e.type, e.data) for e in rest if e.id > middle]
        assert len({e.id for e in replay}) == len(replay)


async def test_the_all_jobs_stream_carries_status_changes_and_reports(env: Env) -> None:
    env.write(FLOW)
    async with (
        live_server(env.settings) as base,
        httpx.AsyncClient(base_url=base, timeout=30, headers=await bearer(env.settings)) as http,
    ):
        connected = asyncio.Event()
        job_id: str | None = None

        async def watch() -> list[Event]:
            async with asyncio.timeout(30), http.stream("GET", "/api/v1/events") as response:
                assert response.status_code == 200
                connected.set()
                received = []
                async for event in sse(response):
                    received.append(event)
                    if event.type == "report":
                        return received
            raise AssertionError("the stream ended")

        watcher = asyncio.create_task(watch())
        await connected_or_failed(watcher, connected)
        job_id = (await http.post("/api/v1/runbooks/flow/jobs", json={})).json()["id"]
        await env.work()
        seen = await watcher

        assert [e.type for e in seen] == ["status", "status", "status", "report"]
        assert [e.data["status"] for e in seen] == ["queued", "running", "completed", "completed"]
        assert all(e.data["job_id"] == job_id for e in seen)
        assert [e.data["previous"] for e in seen[:3]] == [None, "queued", "running"]

        replay = await read_until_report(http, "/api/v1/events", headers={"Last-Event-ID": str(seen[0].id)})
        assert [(e.id, e.type) for e in replay] == [(e.id, e.type) for e in seen[1:]]


async def test_a_stream_of_an_unknown_job_is_a_404(env: Env) -> None:
    async with (
        live_server(env.settings) as base,
        httpx.AsyncClient(base_url=base, timeout=30, headers=await bearer(env.settings)) as http,
    ):
        response = await http.get("/api/v1/jobs/nope/events")
    assert response.status_code == 404


async def test_fifty_all_jobs_streams_each_get_every_one_of_a_burst_of_events(env: Env) -> None:
    """The all-jobs streams of one web process share one read per change (web/feed.py): a stream
    busy sending while that read runs must still get what was announced meanwhile."""
    count, burst = 50, 40
    async with (
        live_server(env.settings) as base,
        httpx.AsyncClient(base_url=base, timeout=60, headers=await bearer(env.settings)) as http,
    ):
        ready = [asyncio.Event() for _ in range(count)]

        async def watch(i: int) -> list[int]:
            async with asyncio.timeout(60), http.stream("GET", "/api/v1/events") as response:
                ready[i].set()
                numbers = []
                async for event in sse(response):
                    numbers.append(event.data["n"])
                    if len(numbers) == burst:
                        return numbers
            raise AssertionError("the stream ended")

        watchers = [asyncio.create_task(watch(i)) for i in range(count)]
        for flag in ready:
            await flag.wait()
        for n in range(burst):
            async with writing(env.svc.engine) as conn:
                await append(conn, [Pending("burst", "status", {"job_id": "burst", "status": "running", "n": n})])
            await publish(env.svc.redis, ["burst"])
            if n % 5 == 0:
                await asyncio.sleep(0.01)
        got = await asyncio.gather(*watchers)
    assert all(numbers == list(range(burst)) for numbers in got)


async def test_idle_streams_carry_heartbeats_so_proxies_keep_them_open(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both streams send a `: ping` comment every heartbeat while nothing happens (one timer per
    web process rings every stream)."""
    monkeypatch.setattr("web.app.HEARTBEAT_S", 0.3)
    env.write(FLOW)
    async with (
        live_server(env.settings) as base,
        httpx.AsyncClient(base_url=base, timeout=30, headers=await bearer(env.settings)) as http,
    ):
        created = await http.post("/api/v1/runbooks/flow/jobs", json={})
        job = created.json()["id"]

        async def pings(url: str) -> int:
            count = 0
            async with asyncio.timeout(10), http.stream("GET", url) as response:
                async for line in response.aiter_lines():
                    count += line == ": ping"
                    if count == 3:
                        return count
            return count

        assert await asyncio.gather(pings("/api/v1/events"), pings(f"/api/v1/jobs/{job}/events")) == [3, 3]
