"""Per-test real parts: a fresh SQLite file, a flushed Redis, a runbooks directory, in-process services."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import uvicorn
import yaml

from orchestrator import auth, events, jobs
from orchestrator.config import Settings
from orchestrator.db.engine import create_engine, writing
from orchestrator.db.migrate import upgrade
from orchestrator.dev import scratch_postgres
from orchestrator.jobs import JobRequest
from orchestrator.services import Services
from orchestrator.states import JobStatus
from orchestrator.transitions import move
from tests.support import CHROMIUM, free_port
from web.app import create_app
from worker.main import build_worker


@dataclass
class Env:
    """One test's orchestrator: settings, open services, and helpers to write runbooks and run jobs."""

    settings: Settings
    svc: Services
    site_url: str = ""  # the local target site (tests/site)
    launches: list[int] = field(default_factory=list)

    def write(self, text: str, filename: str | None = None) -> str:
        """Write a runbook file (NAME.yaml unless `filename` is given); return its name.

        Runbooks reach the local target site as `{{ site.url }}` (filters work: `{{ site.url | urlencode }}`):
        the site's address is put there as a quoted string. `{{ server.url }}` is the app's own address,
        which the browser may not open (orchestrator/urlpolicy.py)."""
        source = textwrap.dedent(text).lstrip()
        if SITE_URL.search(source):
            assert self.site_url, "this Env has no target site: open it with open_env(settings, site_url)"
            source = SITE_URL.sub(lambda _: repr(self.site_url), source)
        name = filename or f"{yaml.safe_load(source)['name']}.yaml"
        (self.settings.runbooks_dir / name).write_text(source, encoding="utf-8")
        return Path(name).stem

    async def create(self, name: str, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
        await self.svc.catalog.refresh(force=True)
        job, created = await jobs.create(self.svc, name, JobRequest(inputs=inputs or {}))
        assert created
        return job

    async def work(self) -> int:
        """Run a burst worker until the queue is empty and its jobs are done; return its Chromium launches."""
        worker = build_worker(self.settings, burst=True, svc=self.svc, poll_delay=0.05)
        try:
            async with asyncio.timeout(120):  # a guard against a hung run, not a speed check
                await worker.main()
            launches = worker.ctx["deps"].browsers.launches
        finally:
            await worker.close()
        self.launches.append(launches)
        return launches

    async def run(self, text: str, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write the runbook, create a job of it, run the worker, return the finished job."""
        job = await self.create(self.write(text), inputs)
        await self.work()
        return await jobs.get(self.svc, job["id"])

    def artifact_path(self, job_id: str, artifact_id: str) -> Path:
        [path] = (self.settings.artifacts_dir / job_id).glob(f"{artifact_id}*")
        return path


#: `site.url` inside a template (not `inputs.site.url`), for Env.write.
SITE_URL = re.compile(r"(?<![\w.])site\.url\b")


def make_settings(tmp_path: Path, redis_url: str) -> Settings:
    """The app is at BASE_URL (where http_client reaches it); the target site is elsewhere (Env.write)."""
    data = tmp_path / "data"
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir(parents=True, exist_ok=True)
    return Settings(
        data_dir=data,
        database_url=f"sqlite+aiosqlite:///{data / 'orchestrator.db'}",
        redis_url=redis_url,
        runbooks_dir=runbooks,
        browser_path=CHROMIUM,
        host="127.0.0.1",
        port=0,
        worker_concurrency=4,
        public_url=BASE_URL,
        secret_key="integration-test-secret-key",
    )


async def prepare(tmp_path: Path, redis_url: str) -> Settings:
    """Settings on a fresh, migrated SQLite file, with Redis flushed."""
    settings = make_settings(tmp_path, redis_url)
    await asyncio.to_thread(upgrade, settings.database_url)
    client = aioredis.from_url(redis_url)
    try:
        await client.flushall()
    finally:
        await client.aclose()
    return settings


@contextlib.asynccontextmanager
async def open_env(settings: Settings, site_url: str = "") -> AsyncIterator[Env]:
    svc = await Services.open(settings)
    try:
        yield Env(settings, svc, site_url)
    finally:
        await svc.close()


@pytest.fixture
async def settings(tmp_path: Path, redis_url: str) -> Settings:
    return await prepare(tmp_path, redis_url)


@pytest.fixture
async def env(settings: Settings, site_url: str) -> AsyncIterator[Env]:
    async with open_env(settings, site_url) as opened:
        yield opened


@pytest.fixture(scope="module")
async def module_env(tmp_path_factory: pytest.TempPathFactory, redis_url: str, site_url: str) -> AsyncIterator[Env]:
    """One orchestrator for a whole module, for modules that run one job and check it from several tests."""
    settings = await prepare(tmp_path_factory.mktemp("module"), redis_url)
    async with open_env(settings, site_url) as opened:
        yield opened


def step(job: dict[str, Any], step_id: str) -> dict[str, Any]:
    """The step of a job object with this id."""
    found = [s for s in job["steps"] if s["id"] == step_id]
    assert found, f"job has no step {step_id!r}; steps: {[s['id'] for s in job['steps']]}"
    return found[0]


@contextlib.asynccontextmanager
async def http_client(settings: Settings, role: str | None = "admin") -> AsyncIterator[httpx.AsyncClient]:
    """The web app in-process (its lifespan running, so it loads the runbooks written so far), over httpx,
    with an API token of `role` (named after the role), or no credentials when `role` is None."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        headers = {}
        if role is not None:
            token = await auth.create_token(app.state.svc.engine, role, role, created_by="tests")
            headers["Authorization"] = f"Bearer {token}"
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL, headers=headers) as http:
            yield http


BASE_URL = "http://orchestrator.test"


async def bearer(settings: Settings, role: str = "admin") -> dict[str, str]:
    """Headers with a new API token of `role`, for clients of a live server."""
    engine = create_engine(settings.database_url)
    try:
        token = await auth.create_token(engine, role, role, created_by="tests")
    finally:
        await engine.dispose()
    return {"Authorization": f"Bearer {token}"}


class LiveServer:
    """The web app served by a real uvicorn on a free port, in a thread with its own event loop."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@contextlib.asynccontextmanager
async def live_server(settings: Settings) -> AsyncIterator[str]:
    """The web app on a real uvicorn (loading the runbooks written so far); yields its base URL."""
    server = LiveServer(settings)
    await asyncio.to_thread(server.start)
    try:
        yield server.url
    finally:
        await asyncio.to_thread(server.stop)


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_db_env(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str, site_url: str
) -> AsyncIterator[Env]:
    settings = await prepare(tmp_path, redis_url)
    if request.param == "sqlite":
        async with open_env(settings, site_url) as env:
            yield env
        return
    async with scratch_postgres() as url, open_env(replace(settings, database_url=url), site_url) as env:
        yield env


@contextmanager
def orch_process(env: Env, command: str, **extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """`orchestrator COMMAND` (worker, scheduler) as a process of its own, configured like `env`;
    killed with its process group (its Chromium too) at the end."""
    environ = {**os.environ, **env.settings.environment(), **extra}
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", command],
        env=environ,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.asynccontextmanager
async def running_worker(env: Env, concurrency: int = 2) -> AsyncIterator[None]:
    worker = build_worker(env.settings, svc=env.svc, concurrency=concurrency, poll_delay=0.2)
    worker._handle_signals = False
    task = asyncio.create_task(worker.main())
    try:
        yield
    finally:
        # let runs that are finishing (arq's own bookkeeping after the job's last write) end first
        finishing = [t for t in worker.tasks.values() if not t.done()]
        if finishing:
            await asyncio.wait(finishing, timeout=10)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await worker.close()


async def to_waiting(env: Env, job_id: str) -> None:
    """Bring a job to waiting_for_approval through the state table (no worker needed)."""
    moved: list[events.Pending] = []
    async with writing(env.svc.engine) as conn:
        await move(conn, job_id, JobStatus.RUNNING, events=moved)
        await move(conn, job_id, JobStatus.WAITING_FOR_APPROVAL, events=moved)
        await events.append(conn, moved)


async def until(env: Env, job_id: str, *statuses: str, seconds: float = 60) -> dict[str, Any]:
    """Poll the job until it is in one of `statuses` (a guard against hangs, not a speed check)."""
    async with asyncio.timeout(seconds):
        while True:
            job = await jobs.get(env.svc, job_id)
            if job["status"] in statuses:
                return job
            await asyncio.sleep(0.1)
