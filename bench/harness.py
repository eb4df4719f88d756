"""Real parts for benchmarks: a private redis-server, a migrated SQLite file (or a scratch PostgreSQL
database), a local web server, worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Collection, Iterator
from dataclasses import replace
from pathlib import Path

from orchestrator.config import Settings
from orchestrator.db.migrate import upgrade
from orchestrator.dev import free_port, redis_binary, scratch_postgres
from orchestrator.services import Services

#: The throughput rows' job: three light steps, no browser.
THREE_STEPS = """name: three
steps:
  - action: set
    values: {a: 1}
  - action: set
    values: {b: "{{ captured.a + 1 }}"}
  - action: sleep
    seconds: 0
"""


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [redis_binary(), "--port", str(port), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), __import__("socket").create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait()


@contextlib.contextmanager
def static_site(folder: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait()


@contextlib.contextmanager
def workspace(runbooks: dict[str, str], redis_url: str, site_url: str = "") -> Iterator[Settings]:
    """Settings of a scratch orchestrator with these runbooks; `{{ site.url }}` in their text is the
    target site's address (the app's own, `server.url`, is one the browser may not open)."""
    root = Path(tempfile.mkdtemp(prefix="orch-bench-"))
    try:
        (root / "runbooks").mkdir()
        for name, text in runbooks.items():
            (root / "runbooks" / f"{name}.yaml").write_text(text.replace("{{ site.url }}", site_url))
        settings = replace(
            Settings.from_env(),
            data_dir=root / "var",
            runbooks_dir=root / "runbooks",
            database_url=f"sqlite+aiosqlite:///{root / 'var' / 'bench.db'}",
            redis_url=redis_url,
            public_url="http://127.0.0.1",
            secret_key="bench",
            browser_path=os.environ.get("ORCH_BROWSER_PATH") or shutil.which("chromium"),
        )
        upgrade(settings.database_url)
        yield settings
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.asynccontextmanager
async def services(settings: Settings) -> AsyncIterator[Services]:
    svc = await Services.open(settings)
    await svc.catalog.refresh(force=True)
    try:
        yield svc
    finally:
        await svc.close()


@contextlib.asynccontextmanager
async def postgres(settings: Settings) -> AsyncIterator[Settings]:
    """`settings` on a new, migrated PostgreSQL database of their own, dropped afterwards."""
    async with scratch_postgres() as url:
        yield replace(settings, database_url=url)


def worker_env(settings: Settings, concurrency: int) -> dict[str, str]:
    return {**os.environ, **settings.environment(), "ORCH_WORKER_CONCURRENCY": str(concurrency)}


@contextlib.contextmanager
def worker_processes(settings: Settings, count: int, concurrency: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` worker processes (`orchestrator worker`, as in production), stopped with SIGTERM at the end.
    Each leads a process group of its own (with its database writer), for `cpu_seconds`."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "worker"],
            env=worker_env(settings, concurrency),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(count)
    ]
    try:
        yield processes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def workers_listening(url: str, count: int, seconds: float = 60) -> None:
    """Wait until `count` workers have started (each subscribes to the wake-up channel once its
    start-up is done)."""
    from redis.asyncio import Redis

    from orchestrator.keys import WAKE_CHANNEL

    client = Redis.from_url(url)
    try:
        deadline = time.monotonic() + seconds
        while (await client.pubsub_numsub(WAKE_CHANNEL))[0][1] < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {count} workers started within {seconds:g} s")
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()


def cpu_seconds(pgids: Collection[int] = (), command: str = "") -> float:
    """User + system CPU of the live processes in these process groups, or whose command line
    holds `command` (a PostgreSQL backend shows its database there)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()  # after the name: state ppid pgrp
            if int(fields[2]) in pgids or (command and command.encode() in (entry / "cmdline").read_bytes()):
                total += (int(fields[11]) + int(fields[12])) / tick
    return total


def machine_busy() -> tuple[float, float]:
    """CPU seconds the whole machine has been busy, and all CPU seconds, since boot (/proc/stat)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks) - idle) / tick, sum(ticks) / tick


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def worker_ready(url: str, seconds: float = 60) -> None:
    """Wait until a worker polls the queue (arq sets its health-check key on its first poll)."""
    from arq.constants import default_queue_name, health_check_key_suffix
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        deadline = time.monotonic() + seconds
        while not await client.exists(default_queue_name + health_check_key_suffix):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no worker polled within {seconds:g} s")
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()


async def flush_redis(url: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    await client.flushall()
    await client.aclose()
    await asyncio.sleep(0)
