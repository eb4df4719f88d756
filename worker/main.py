"""The worker process: the arq function that runs a job, the worker's settings, start-up and shut-down."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

from arq.worker import func

from orchestrator import logs, queue
from orchestrator.config import Settings
from orchestrator.limits import Limits
from orchestrator.services import Services
from orchestrator.urlpolicy import UrlPolicy
from worker.actions import default_registry
from worker.arq_worker import OrchestratorWorker
from worker.browser import BrowserPool
from worker.committer import Committer
from worker.counts import Counts
from worker.deps import Deps
from worker.executor import Executor
from worker.lease import Leases
from worker.presence import Presence
from worker.watcher import sweep_frames

log = logging.getLogger(__name__)

#: arq's own limit for one job; the runbook's `settings.timeout` is what really bounds a job.
ARQ_JOB_TIMEOUT = 7 * 24 * 3600


async def run_job(ctx: dict[str, Any], job_id: str, attempt: int, trace: str | None = None) -> None:
    """Run one attempt of a job; `trace` is the traceparent of its enqueue, when it carried one."""
    await Executor(ctx["deps"], job_id, attempt, trace).run()


def robot_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def build_worker(
    settings: Settings,
    *,
    burst: bool = False,
    concurrency: int | None = None,
    svc: Services | None = None,
    poll_delay: float = 0.5,
) -> OrchestratorWorker:
    async def startup(ctx: dict[str, Any]) -> None:
        services = svc or await Services.open(settings, "orchestrator-worker")
        committer = Committer(services.engine, services.redis)
        policy = UrlPolicy.of(settings)
        await sweep_frames(services)  # video frames a dead worker left behind
        await committer.start()
        ctx["deps"] = deps = Deps(
            svc=services,
            browsers=BrowserPool(settings.browser_path, policy),
            policy=policy,
            registry=default_registry(),
            committer=committer,
            robot=robot_name(),
            leases=Leases(services.redis),
            limits=Limits(services.engine, services.redis),
            counts=Counts(services.redis),
        )
        deps.slots = worker
        ctx["presence"] = Presence(services.redis, settings, deps.robot, worker, deps.running)
        await ctx["presence"].start()  # in the worker registry (GET /api/v1/workers) until shutdown

    async def shutdown(ctx: dict[str, Any]) -> None:
        deps: Deps | None = ctx.get("deps")
        if deps is None:
            return
        if "presence" in ctx:
            await ctx["presence"].stop()
        await deps.committer.stop()
        await deps.counts.close()  # after the committer: the last ends it commits are counted
        await deps.browsers.close()
        if svc is None:
            await deps.svc.close()

    worker = OrchestratorWorker(
        functions=[func(run_job, name=queue.FUNCTION, timeout=ARQ_JOB_TIMEOUT, max_tries=3)],
        redis_settings=queue.redis_settings(settings.redis),
        max_jobs=concurrency or settings.worker_concurrency,
        poll_delay=poll_delay,
        keep_result=0,
        # Jobs are cancelled on CONTROL_CHANNEL, never by arq's abort: one round trip fewer per poll.
        allow_abort_jobs=False,
        burst=burst,
        handle_signals=not burst,
        on_startup=startup,
        on_shutdown=shutdown,
        job_timeout=ARQ_JOB_TIMEOUT,
    )
    return worker


def fast_loop() -> None:
    """Run on uvloop where it is installed (uvicorn[standard] brings it on Linux and macOS): the
    same jobs for less CPU; arq, Redis, SQLite and Playwright work alike on it (bench/)."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run(settings: Settings) -> None:
    fast_loop()
    logs.bind(worker=robot_name())  # every line of this process names it: its tasks and signal handlers inherit this
    worker = build_worker(settings)
    log.info("worker %s: %d jobs at once", robot_name(), worker.max_jobs)
    worker.run()
