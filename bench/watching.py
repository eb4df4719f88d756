"""Watching benchmarks: live frames (rate, Chromium-to-page latency, CPU with and without a
watcher) and SSE fan-out (1,000 clients of one web process, delivery latency and memory)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from playwright.async_api import async_playwright

from bench import harness
from bench.harness import flush_redis, percentile, services, static_site, worker_env, workspace
from orchestrator import auth, events, jobs
from orchestrator.db.engine import writing
from orchestrator.dev import free_port
from orchestrator.jobs import JobRequest
from worker.browser import CHROMIUM_ARGS

TICKER = """<!doctype html><title>Ticker</title>
<p id="tick" style="font-size:64px">0</p>
<script>let n = 0; setInterval(() => { document.getElementById("tick").textContent = String(++n); }, 50);</script>
"""
WATCHED = """name: ticker
steps:
  - {id: open, action: goto, url: "{{ site.url }}/ticker.html"}
  - {id: wait, action: sleep, seconds: 40, timeout: 60}
"""
PHASE_S = 8.0
CLIENTS = int(os.environ.get("BENCH_SSE_CLIENTS", "1000"))
EVENTS_PER_S = 10
SSE_SECONDS = 20


def cpu_seconds(pgid: int) -> float:
    """User + system CPU of every live process in a process group."""
    return harness.cpu_seconds({pgid})


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@contextlib.contextmanager
def process(settings: Any, command: str, **extra: str) -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", command],
        env={**worker_env(settings, 2), **extra},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield child
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, 15)
        child.wait()


async def wait_http(port: int) -> None:
    async with asyncio.timeout(30):
        while True:
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return
            await asyncio.sleep(0.1)


FRAME_WATCH = """() => {
  window.__frames = [];
  const img = document.querySelector("[data-role=live-screenshot-img]");
  new MutationObserver(() => {
    const at = Date.parse(img.dataset.frameAt || "");
    if (at) window.__frames.push(Date.now() - at);
  }).observe(img, { attributes: true, attributeFilter: ["src"] });
}"""


async def frames(redis_url: str) -> list[tuple[str, str, str, str]]:
    await flush_redis(redis_url)
    site = Path(__file__).parent / "site"
    site.mkdir(exist_ok=True)
    (site / "ticker.html").write_text(TICKER)
    with static_site(site) as site_url, workspace({"ticker": WATCHED}, redis_url, site_url) as settings:
        async with services(settings) as svc:
            await auth.add_user(svc.engine, "bench", "viewer", "bench-password")
            port = free_port()
            with process(settings, "web", ORCH_PORT=str(port)) as web, process(settings, "worker") as worker:
                await wait_http(port)
                job, _ = await jobs.create(svc, "ticker", JobRequest())
                await asyncio.sleep(4)  # the browser starts and opens the page
                idle_before = cpu_seconds(worker.pid)
                await asyncio.sleep(PHASE_S)
                idle = (cpu_seconds(worker.pid) - idle_before) / PHASE_S
                watched, latencies, web_cpu = await _watch(f"http://127.0.0.1:{port}", job["id"], worker.pid, web.pid)
    fps = len(latencies) / PHASE_S
    return [
        (
            "live frames delivered to a watching page (page changes 20 times a second)",
            f"{fps:.1f} frames/s",
            "-",
            "target >= 5 frames/s",
        ),
        (
            "frame latency, Chromium to the watching page",
            f"p50 {percentile(latencies, 50):.0f} ms, p99 {percentile(latencies, 99):.0f} ms",
            "-",
            "target p50 < 300 ms, p99 < 500 ms",
        ),
        (
            "CPU of the worker and its Chromium while a job runs",
            f"watched {watched * 100:.0f} % of a core (+ web {web_cpu * 100:.0f} %)",
            f"nobody watching: {idle * 100:.0f} %",
            "no watcher, no frames",
        ),
    ]


async def _watch(base: str, job_id: str, worker_pid: int, web_pid: int) -> tuple[float, list[float], float]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(f"{base}/login")
            await page.get_by_label("Username").fill("bench")
            await page.get_by_label("Password").fill("bench-password")
            await page.get_by_role("button", name="Sign in").click()
            await page.wait_for_url(lambda url: "/login" not in url)
            await page.goto(f"{base}/jobs/{job_id}")
            await page.evaluate(FRAME_WATCH)
            await asyncio.sleep(1)
            await page.evaluate("() => { window.__frames = []; }")
            cpu_before, web_before = cpu_seconds(worker_pid), cpu_seconds(web_pid)
            await asyncio.sleep(PHASE_S)
            watched = (cpu_seconds(worker_pid) - cpu_before) / PHASE_S
            web_cpu = (cpu_seconds(web_pid) - web_before) / PHASE_S
            latencies = await page.evaluate("() => window.__frames")
        finally:
            await browser.close()
    return watched, latencies, web_cpu


def _chromium() -> str | None:
    import shutil

    return os.environ.get("ORCH_BROWSER_PATH") or shutil.which("chromium")


# -- SSE fan-out ---------------------------------------------------------------------------------


async def _client(port: int, token: str, delays: list[float], connected: asyncio.Event, counter: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET /api/v1/events HTTP/1.0\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    writer.write(request.encode())
    await writer.drain()
    while await reader.readline() not in (b"\r\n", b""):
        pass
    counter[0] += 1
    if counter[0] == CLIENTS:
        connected.set()
    try:  # cheap parsing, so the clients measure the server rather than themselves
        while chunk := await reader.read(65536):
            now = time.time()
            start = 0
            while (at := chunk.find(b'"sent": ', start)) >= 0:
                end = chunk.find(b"}", at)
                delays.append(now - float(chunk[at + 8 : end]))
                start = end
    finally:
        writer.close()


async def _publish(svc: Any, seconds: float) -> int:
    """Stored status events, announced as the worker announces them."""
    sent = 0
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        async with writing(svc.engine) as conn:
            data = {"job_id": "bench", "status": "running", "previous": "queued", "sent": time.time()}
            await events.append(conn, [events.Pending("bench", "status", data)])
        await events.publish(svc.redis, ["bench"])
        sent += 1
        await asyncio.sleep(max(0.0, started + sent / EVENTS_PER_S - time.monotonic()))
    return sent


async def _drive(port: int, token: str, publish: Any, pid: int) -> tuple[list[float], int, float, float]:
    """Connect CLIENTS, measure the server's memory per idle connection, then publish for
    SSE_SECONDS: (delays, events sent, KiB per idle connection, server CPU share)."""
    await wait_http(port)
    await asyncio.sleep(1)
    before = rss_kib(pid)
    delays: list[float] = []
    connected, counter = asyncio.Event(), [0]
    clients = [asyncio.create_task(_client(port, token, delays, connected, counter)) for _ in range(CLIENTS)]
    async with asyncio.timeout(60):
        await connected.wait()
    await asyncio.sleep(3)
    per_idle = (rss_kib(pid) - before) / CLIENTS
    cpu_before = cpu_seconds(pid)
    sent = await publish(SSE_SECONDS)
    await asyncio.sleep(1)
    cpu = (cpu_seconds(pid) - cpu_before) / SSE_SECONDS
    for client in clients:
        client.cancel()
    await asyncio.gather(*clients, return_exceptions=True)
    return delays, sent, per_idle, cpu


async def _bare(redis_url: str) -> tuple[list[float], int, float, float]:
    """The same load against bare sse-starlette (bench/baresse.py)."""
    redis = aioredis.from_url(redis_url)

    async def publish(seconds: float) -> int:
        sent, started = 0, time.monotonic()
        while time.monotonic() - started < seconds:
            data = {"job_id": "bench", "status": "running", "previous": "queued", "sent": time.time()}
            await redis.publish("bare", json.dumps(data))
            sent += 1
            await asyncio.sleep(max(0.0, started + sent / EVENTS_PER_S - time.monotonic()))
        return sent

    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "bench.baresse:app", "--port", str(port), "--log-level", "critical"]
    env = {**os.environ, "BARE_REDIS_URL": redis_url}
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        return await _drive(port, "none", publish, server.pid)
    finally:
        server.terminate()
        server.wait()
        await redis.aclose()


async def fan_out(redis_url: str) -> list[tuple[str, str, str, str]]:
    await flush_redis(redis_url)
    with workspace({}, redis_url) as settings:
        async with services(settings) as svc:
            token = await auth.create_token(svc.engine, "bench", "viewer", "bench")
            port = free_port()
            # the clients share one token: let it hold them all (the per-user cap is 50 by default)
            with process(settings, "web", ORCH_PORT=str(port), ORCH_SSE_STREAMS_PER_USER=str(CLIENTS)) as web:
                delays, sent, per_idle, web_cpu = await _drive(port, token, partial(_publish, svc), web.pid)
    bare, _, bare_idle, bare_cpu = await _bare(redis_url)
    ms, bare_ms = [d * 1000 for d in delays], [d * 1000 for d in bare]
    return [
        (
            f"SSE fan-out: {CLIENTS} clients of /api/v1/events, {EVENTS_PER_S} events/s, one web process",
            f"p50 {percentile(ms, 50):.0f} ms, p99 {percentile(ms, 99):.0f} ms; "
            f"{len(delays)} of {sent * CLIENTS} delivered; web CPU {web_cpu * 100:.0f} %",
            f"bare sse-starlette: p50 {percentile(bare_ms, 50):.0f} ms, p99 {percentile(bare_ms, 99):.0f} ms, "
            f"CPU {bare_cpu * 100:.0f} %",
            "target p99 < 250 ms",
        ),
        (
            "memory per idle SSE connection",
            f"{per_idle:.1f} KiB",
            f"bare sse-starlette: {bare_idle:.1f} KiB",
            "target < 50 KiB",
        ),
    ]


async def run(redis_url: str) -> list[tuple[str, str, str, str]]:
    return [*await frames(redis_url), *await fan_out(redis_url)]


if __name__ == "__main__":
    from bench.harness import redis_server

    with redis_server() as url:
        for row in asyncio.run(run(url)):
            print(" | ".join(row))
