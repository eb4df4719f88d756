"""The cluster under watch (issue 18): two web processes behind a real nginx, two worker processes,
one PostgreSQL and one Redis, as the README's Deployment section runs them. JOBS three-step jobs are
made and held off the queue, WATCHERS clients follow /api/v1/events through nginx (which spreads
them over both web processes), then the jobs are released and drained. Each client notes when every
status event reaches it; the delay is that time minus the event's own `at` (the moment the worker
moved the job): what an operator's page lags behind the work, group commit, PostgreSQL, the feed,
both web processes and nginx included."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import func, select

from bench.harness import (
    THREE_STEPS,
    cpu_seconds,
    flush_redis,
    machine_busy,
    percentile,
    postgres,
    services,
    worker_processes,
    workers_listening,
    workspace,
)
from bench.watching import process, wait_http
from orchestrator import auth, events, jobs
from orchestrator.db import tables as t
from orchestrator.db.engine import reading
from orchestrator.dev import free_port
from orchestrator.keys import WAKE_CHANNEL
from tests.e2e.cluster import Site, nginx

JOBS = int(os.environ.get("BENCH_JOBS", "2000"))
WATCHERS = int(os.environ.get("BENCH_CLUSTER_WATCHERS", "200"))
WORKERS = 2
CONCURRENCY = 10


STAMP = re.compile(rb'"at": "([^"]+)"')
LAST_ID = re.compile(rb"id: ([0-9]+)")


class Watcher:
    """One client of /api/v1/events through nginx, over HTTP/1.0 as a plain stream (no chunking)."""

    def __init__(self, port: int, token: str, times: dict[bytes, float]) -> None:
        self.port, self.token, self.times = port, token, times
        self.delays: list[float] = []
        self.upstream = ""
        self.last_id = 0
        self.pending = b""

    async def run(self, connected: asyncio.Event, counter: list[int]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        request = (
            f"GET /api/v1/events HTTP/1.0\r\nAuthorization: Bearer {self.token}\r\nAccept: text/event-stream\r\n\r\n"
        )
        writer.write(request.encode())
        await writer.drain()
        status = await reader.readline()
        assert b" 200 " in status, status
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"x-upstream:"):
                self.upstream = line.split(b":", 1)[1].strip().decode()
        counter[0] += 1
        if counter[0] == WATCHERS:
            connected.set()
        try:
            while chunk := await reader.read(262144):
                self._take(chunk, time.time())
        finally:
            writer.close()

    def _take(self, chunk: bytes, now: float) -> None:
        """Cheap parsing (one regular expression over what arrived), so the clients measure the cluster
        rather than themselves; each `at` string is parsed once for all clients. Only status events
        carry `at`; an event cut in two by a read is counted with its second half."""
        self.pending += chunk
        cut = self.pending.rfind(b"\r\n\r\n")
        if cut < 0:
            return
        whole, self.pending = self.pending[: cut + 4], self.pending[cut + 4 :]
        for stamp in STAMP.findall(whole):
            when = self.times.get(stamp)
            if when is None:
                when = self.times[stamp] = datetime.fromisoformat(stamp.decode()).timestamp()
            self.delays.append(now - when)
        if ids := LAST_ID.findall(whole[-400:]):
            self.last_id = int(ids[-1])


async def _status_events_after(svc: Any, after: int) -> tuple[int, int]:
    async with reading(svc.engine) as conn:
        found = await conn.execute(
            select(func.count(), func.max(t.events.c.id)).where(t.events.c.id > after, t.events.c.type == "status")
        )
        count, top = found.one()
    return count or 0, top or 0


async def _commit_lags(svc: Any, after: int) -> list[float]:
    """Per status event, ms from the worker's move (`at`) to its row's insert (`created_at`, set by the
    worker's database writer): the part of the delay that is spent before any web process can see it."""
    async with reading(svc.engine) as conn:
        rows = (
            await conn.execute(
                select(t.events.c.data, t.events.c.created_at).where(t.events.c.id > after, t.events.c.type == "status")
            )
        ).all()
    return [(_utc(r.created_at) - datetime.fromisoformat(r.data["at"])).total_seconds() * 1000 for r in rows]


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def _completed(svc: Any) -> int:
    async with reading(svc.engine) as conn:
        return (await conn.execute(select(func.count()).where(t.jobs.c.status == "completed"))).scalar() or 0


async def run(redis_url: str) -> list[tuple[str, str, str, str]]:
    await flush_redis(redis_url)
    held = "bench:held"
    with workspace({"three": THREE_STEPS}, redis_url) as sqlite, tempfile.TemporaryDirectory() as tmp:
        async with postgres(sqlite) as settings, services(settings) as svc:
            token = await auth.create_token(svc.engine, "bench", "viewer", "bench")
            for _ in range(JOBS):
                await jobs.create(svc, "three", jobs.JobRequest())
            async with reading(svc.engine) as conn:
                start = await events.last_id(conn)
            client = Redis.from_url(redis_url)
            ports = [free_port(), free_port()]
            extra = {"ORCH_SSE_STREAMS_PER_USER": str(WATCHERS), "ORCH_TRUSTED_PROXIES": "127.0.0.1"}
            site = Site(free_port(), "127.0.0.1", tls=False)
            try:
                await client.rename(svc.redis.default_queue_name, held)
                with (
                    process(settings, "web", ORCH_PORT=str(ports[0]), **extra) as web1,
                    process(settings, "web", ORCH_PORT=str(ports[1]), **extra) as web2,
                    worker_processes(settings, WORKERS, CONCURRENCY) as workers,
                    nginx(Path(tmp) / "nginx", [f"127.0.0.1:{p}" for p in ports], [site]),
                ):
                    backends = f" {settings.database_url.rsplit('/', 1)[1]} "
                    groups = {
                        "web": {web1.pid, web2.pid},
                        "workers": {w.pid for w in workers},
                        "bench": {os.getpgid(0)},
                    }

                    def cpu() -> dict[str, float]:
                        used = {name: cpu_seconds(pgids) for name, pgids in groups.items()}
                        used["postgres"] = cpu_seconds(command=backends)
                        used["nginx"] = cpu_seconds(command="nginx: worker")
                        used["machine"] = machine_busy()[0]
                        return used

                    for port in ports:
                        await wait_http(port)
                    await workers_listening(redis_url, WORKERS)
                    times: dict[bytes, float] = {}
                    watchers = [Watcher(site.port, token, times) for _ in range(WATCHERS)]
                    connected, counter = asyncio.Event(), [0]
                    tasks = [asyncio.create_task(w.run(connected, counter)) for w in watchers]
                    async with asyncio.timeout(60):
                        await connected.wait()
                    await asyncio.sleep(1)
                    before = cpu()
                    started = time.perf_counter()
                    await client.rename(held, svc.redis.default_queue_name)
                    await client.publish(WAKE_CHANNEL, "bench")
                    async with asyncio.timeout(300):
                        while await _completed(svc) < JOBS:
                            await asyncio.sleep(0.05)
                    drained = time.perf_counter() - started
                    after = cpu()
                    cores = {k: (after[k] - before[k]) / drained for k in after}
                    expected, top = await _status_events_after(svc, start)
                    with contextlib.suppress(TimeoutError):  # the last events reach every watcher
                        async with asyncio.timeout(30):
                            while min(w.last_id for w in watchers) < top:
                                await asyncio.sleep(0.05)
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                lags = await _commit_lags(svc, start)
            finally:
                await client.aclose()
    delays = [d * 1000 for w in watchers for d in w.delays]
    delivered = len(delays)
    upstreams = sorted({w.upstream for w in watchers})
    return [
        (
            f"cluster on PostgreSQL: {WORKERS} workers drain {JOBS} three-step jobs while {WATCHERS} clients"
            f" follow /api/v1/events through nginx and {len(upstreams)} web processes",
            f"delivery p50 {percentile(delays, 50):.0f} ms, p99 {percentile(delays, 99):.0f} ms;"
            f" {delivered} of {expected * WATCHERS} status events delivered; drained at {JOBS / drained:.0f} jobs/s;"
            f" of the delay, worker to database p50 {percentile(lags, 50):.0f} ms, p99 {percentile(lags, 99):.0f} ms",
            "cores busy while draining: " + ", ".join(f"{k} {v:.2f}" for k, v in cores.items()),
            "target p99 < 250 ms",
        )
    ]


if __name__ == "__main__":
    from bench.harness import redis_server
    from worker.main import fast_loop

    fast_loop()
    with redis_server() as url:
        for row in asyncio.run(run(url)):
            print(" | ".join(row))
