"""Workers die and stop: a job survives a SIGKILLed worker (browser and all) and a SIGTERMed one.

The workers are real `orchestrator worker` processes sharing the test's Redis and SQLite file.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import tempfile
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from arq.connections import create_pool
from arq.constants import in_progress_key_prefix
from redis.exceptions import RedisError

from orchestrator import events, jobs, queue
from orchestrator.db.engine import reading
from orchestrator.dev import redis_command
from orchestrator.services import Services
from orchestrator.states import Action
from tests.integration.conftest import Env, orch_process, step
from tests.support import free_port, stop_process, wait_for_port
from worker.main import build_worker

RUNBOOK = """
name: survivor
steps:
  - {id: open, action: goto, url: "{{ site.url }}/form.html"}
  - {id: type-name, action: fill, selector: "#name", value: Initech}
  - {id: long, action: sleep, seconds: 4}
  - {id: read-name, action: extract, selector: "#name", save_as: name}
  - {id: count, action: set, values: {n: 1}}
outputs:
  name: "{{ captured.name }}"
"""


def worker_process(env: Env) -> AbstractContextManager[subprocess.Popen[bytes]]:
    return orch_process(env, "worker", ORCH_WORKER_CONCURRENCY="2")


async def step_running(env: Env, job_id: str, step_id: str) -> None:
    async with asyncio.timeout(60):
        while step((await jobs.get(env.svc, job_id)), step_id)["status"] != "running":
            await asyncio.sleep(0.05)


async def finished(env: Env, job_id: str, seconds: float = 90) -> dict[str, Any]:
    async with asyncio.timeout(seconds):  # a guard against hangs, not a speed check
        while True:
            job = await jobs.get(env.svc, job_id)
            if job["status"] in ("completed", "failed", "cancelled") and job["metrics"]["duration_s"] is not None:
                return job
            await asyncio.sleep(0.2)


async def test_a_killed_workers_job_resumes_on_another_worker_where_it_stopped(env: Env) -> None:
    job = await env.create(env.write(RUNBOOK))
    with worker_process(env) as first:
        await step_running(env, job["id"], "long")
        os.killpg(first.pid, signal.SIGKILL)  # the worker and its Chromium, mid-step
        first.wait()
    with worker_process(env):
        done = await finished(env, job["id"])
    assert done["status"] == "completed", done["error"]
    assert done["attempt"] == 2
    assert done["outputs"] == {"name": "Initech"}  # the page was restored and the form refilled
    # steps that had succeeded were not run again; the interrupted one and the rest ran in attempt 2
    assert [(s["id"], s["attempt"]) for s in done["steps"]] == [
        ("open", 1),
        ("type-name", 1),
        ("long", 2),
        ("read-name", 2),
        ("count", 2),
    ]
    assert all(s["status"] == "success" for s in done["steps"])


@pytest.mark.parametrize("signals", [[signal.SIGTERM], [signal.SIGINT, signal.SIGINT]], ids=["sigterm", "ctrl-c-twice"])
async def test_sigterm_hands_running_jobs_back_at_once(env: Env, signals: list[signal.Signals]) -> None:
    job = await env.create(env.write(RUNBOOK))
    with worker_process(env) as first:
        await step_running(env, job["id"], "long")
        for sent in signals:  # a second one arrives while the first hands the job back
            first.send_signal(sent)
            await asyncio.sleep(0.01)
        assert await asyncio.to_thread(first.wait, 10) == 0  # within 10 s
        handed = await jobs.get(env.svc, job["id"])
        assert handed["status"] == "queued"
        assert handed["attempt"] == 2
    with worker_process(env):
        done = await finished(env, job["id"])
    assert done["status"] == "completed", done["error"]
    assert done["outputs"] == {"name": "Initech"}
    assert step(done, "open")["attempt"] == 1


def start_redis(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        redis_command(port, Path(tempfile.gettempdir()), persistent=False),
        stdout=subprocess.DEVNULL,
    )
    wait_for_port(port, process)
    return process


async def test_a_redis_restart_loses_no_job(env: Env) -> None:
    """Redis restarts empty under a running job, and a job is created while it is down."""
    port = free_port()
    redis = start_redis(port)
    env = replace(env, settings=replace(env.settings, redis_url=f"redis://127.0.0.1:{port}/0"))
    svc = await Services.open(env.settings)
    env = replace(env, svc=svc)
    try:
        running = await env.create(env.write(RUNBOOK))
        with worker_process(env):
            await step_running(env, running["id"], "long")
            stop_process(redis)
            created_while_down = await env.create("survivor")  # stored; enqueued once Redis is back
            await asyncio.sleep(3)  # down for longer than the worker's poll and heartbeat
            redis = start_redis(port)
            first = await finished(env, running["id"])
            second = await finished(env, created_while_down["id"])
    finally:
        await svc.close()
        stop_process(redis)
    assert first["status"] == "completed", first["error"]
    assert second["status"] == "completed", second["error"]
    assert second["outputs"] == {"name": "Initech"}


async def test_a_claim_that_fails_while_redis_is_down_gives_its_slots_back(env: Env) -> None:
    """The worker claims jobs for all its free slots at once (worker/main.py); when Redis fails
    that call, the slots come back, or the worker would look alive and never run a job again."""
    port = free_port()
    redis = start_redis(port)
    settings = replace(env.settings, redis_url=f"redis://127.0.0.1:{port}/0")
    worker = build_worker(settings, svc=env.svc, concurrency=3)
    worker._pool = await create_pool(queue.redis_settings(settings.redis))
    try:
        stop_process(redis)
        with pytest.raises((RedisError, OSError)):
            await worker.start_jobs([b"a", b"b", b"c"])
        assert worker.job_counter == 0
        async with asyncio.timeout(1):  # all three slots are free again
            for _ in range(3):
                await worker.sem.acquire()
    finally:
        await worker.pool.aclose()


async def test_streams_of_a_job_read_again_after_the_hub_lost_redis(env: Env) -> None:
    """An announcement lost while Redis was away must not leave a job's stream silent: after
    reconnecting, the hub wakes every stream, and each reads what it missed."""
    port = free_port()
    redis = start_redis(port)
    client = aioredis.from_url(f"redis://127.0.0.1:{port}/0")
    hub = events.Hub(client)
    await hub.start()
    try:
        with hub.subscribe("some-job") as job_news, hub.subscribe(None) as all_news:
            job_news.take_news(), all_news.take_news()
            stop_process(redis)
            redis = start_redis(port)
            async with asyncio.timeout(10):
                assert await job_news.wait() and job_news.take_news()
                assert await all_news.wait() and all_news.take_news()
    finally:
        await hub.stop()
        await client.aclose()
        stop_process(redis)


async def test_twenty_killed_workers_lose_no_job_and_repeat_no_finished_step(env: Env) -> None:
    env.write(RUNBOOK)
    created = []
    for _ in range(20):
        job = await env.create("survivor")
        created.append(job["id"])
        with worker_process(env) as doomed:
            await step_running(env, job["id"], "long")
            os.killpg(doomed.pid, signal.SIGKILL)
            doomed.wait()
    with worker_process(env):
        done = [await finished(env, job_id, seconds=240) for job_id in created]
    assert [job["status"] for job in done] == ["completed"] * 20
    for job in done:
        assert job["attempt"] == 2
        assert step(job, "open")["attempt"] == 1 and step(job, "type-name")["attempt"] == 1
        assert job["outputs"] == {"name": "Initech"}
    running = await jobs.list_jobs(env.svc, jobs.JobFilter(status=["running", "queued"]))
    assert running["total"] == 0


APPROVAL = """
name: approve-after-death
steps:
  - {id: open, action: goto, url: "{{ site.url }}/form.html"}
  - {id: type-name, action: fill, selector: "#name", value: Initech}
  - {id: ask, action: approval, message: "Go on?"}
  - {id: read-name, action: extract, selector: "#name", save_as: name}
outputs:
  name: "{{ captured.name }}"
"""


async def test_a_job_waiting_for_approval_whose_worker_died_is_approved_and_resumes_elsewhere(env: Env) -> None:
    job = await env.create(env.write(APPROVAL))
    with worker_process(env) as first:
        async with asyncio.timeout(60):
            while (await jobs.get(env.svc, job["id"]))["status"] != "waiting_for_approval":
                await asyncio.sleep(0.1)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    await jobs.act(env.svc, job["id"], Action.APPROVE, "grace", "still fine")
    with worker_process(env):
        done = await finished(env, job["id"])
    assert done["status"] == "completed", done["error"]
    assert done["attempt"] == 2
    assert done["outputs"] == {"name": "Initech"}  # the page and its form were restored
    assert step(done, "read-name")["attempt"] == 2
    assert done["approval"]["decision"] == "approved"


async def test_a_stalled_worker_that_comes_back_is_fenced_and_writes_nothing(env: Env) -> None:
    job = await env.create(env.write(RUNBOOK))
    with worker_process(env) as stalled:
        await step_running(env, job["id"], "long")
        os.killpg(stalled.pid, signal.SIGSTOP)  # frozen mid-step, browser and all: its lease runs out
        with worker_process(env):
            done = await finished(env, job["id"])
        os.killpg(stalled.pid, signal.SIGCONT)  # it wakes up believing it still runs attempt 1
        await asyncio.sleep(6)  # the rest of its sleep step, and more
        after = await jobs.get(env.svc, job["id"])
    assert done["status"] == "completed" and done["attempt"] == 2
    assert after["status"] == "completed" and after["attempt"] == 2
    assert [(s["id"], s["attempt"], s["status"]) for s in after["steps"]] == [
        (s["id"], s["attempt"], s["status"]) for s in done["steps"]
    ]
    async with reading(env.svc.engine) as conn:
        stream = await events.read_after(conn, 0, job["id"])
    assert stream[-1].type == "report"  # nothing was written after the run that finished
    assert [e.type for e in stream].count("report") == 1


async def test_a_job_whose_worker_is_lost_three_times_fails_saying_so(env: Env) -> None:
    job = await env.create(env.write(RUNBOOK))
    for attempt in (1, 2, 3):
        with worker_process(env) as doomed:
            current = await jobs.get(env.svc, job["id"])
            try:
                async with asyncio.timeout(60):
                    while not (
                        step(current, "long")["attempt"] == attempt and step(current, "long")["status"] == "running"
                    ):
                        await asyncio.sleep(0.05)
                        current = await jobs.get(env.svc, job["id"])
            except TimeoutError:
                raise AssertionError(f"attempt {attempt} never ran: {current}") from None
            os.killpg(doomed.pid, signal.SIGKILL)
            doomed.wait()
    with worker_process(env):  # its reaper finds the third loss
        async with asyncio.timeout(60):
            while (failed := await jobs.get(env.svc, job["id"]))["status"] != "failed":
                await asyncio.sleep(0.2)
    assert "lost 3 times" in failed["error"]["message"]
    assert failed["attempt"] == 3


async def test_a_job_taken_from_the_queue_by_a_worker_that_died_before_claiming_it_still_runs(env: Env) -> None:
    job = await env.create(env.write(RUNBOOK))
    # What Redis holds when a worker took the job from arq's queue and died before its claim:
    # arq's in-progress mark (kept for arq's job timeout) and no lease.
    await env.svc.redis.set(f"{in_progress_key_prefix}{job['id']}:1", b"1", px=3_600_000)
    with worker_process(env):
        done = await finished(env, job["id"])
    assert done["status"] == "completed", done["error"]
    assert done["attempt"] == 2
