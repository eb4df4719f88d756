"""The worker claims arq's jobs its own way (one script for the claim and the job's payload and try)
and runs them in place, and keeps arq's rules: a job runs at most `max_tries` times, a job arq
cannot run is reported and removed from the queue without stopping the others, `Retry` runs a job
again, and a function's timeout stops it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from arq.constants import default_queue_name, job_key_prefix, retry_key_prefix
from arq.worker import Retry, func

from orchestrator import jobs, queue
from tests.integration.conftest import Env
from worker.main import build_worker

RUNBOOK = """
name: counted
steps:
  - {id: one, action: set, values: {n: 1}}
"""


async def test_a_job_on_its_last_allowed_try_runs_and_one_past_it_does_not(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    name = env.write(RUNBOOK)
    last, past = await env.create(name), await env.create(name)
    # what Redis holds for jobs arq already started twice and three times (workers stopped mid-run)
    await env.svc.redis.set(retry_key_prefix + queue.arq_job_id(last["id"], 1), 2)
    await env.svc.redis.set(retry_key_prefix + queue.arq_job_id(past["id"], 1), 3)
    with caplog.at_level(logging.WARNING, logger="arq.worker"):
        await env.work()
    assert (await jobs.get(env.svc, last["id"]))["status"] == "completed"  # its try counted once: the third
    assert (await jobs.get(env.svc, past["id"]))["status"] == "queued"  # arq refused a fourth
    assert "max retries 3 exceeded" in caplog.text
    assert await env.svc.redis.zcard(default_queue_name) == 0


async def test_a_queued_function_the_worker_does_not_know_is_reported_and_the_next_job_runs(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    stranger = await env.svc.redis.enqueue_job("not_ours", _job_id="stranger")
    assert stranger is not None
    job = await env.create(env.write(RUNBOOK))
    with caplog.at_level(logging.WARNING, logger="arq.worker"):
        await env.work()
    assert "function 'not_ours' not found" in caplog.text
    assert (await jobs.get(env.svc, job["id"]))["status"] == "completed"
    assert await env.svc.redis.zcard(default_queue_name) == 0
    assert not await env.svc.redis.exists(job_key_prefix + "stranger")


async def test_arq_retry_runs_a_job_again_and_a_function_past_its_timeout_is_stopped(env: Env) -> None:
    tries: list[int] = []
    finished: list[str] = []

    async def flaky(ctx: dict[str, Any]) -> None:
        tries.append(ctx["job_try"])
        if len(tries) == 1:
            raise Retry(defer=0.1)

    async def slow(ctx: dict[str, Any]) -> None:
        await asyncio.sleep(30)
        finished.append(ctx["job_id"])

    worker = build_worker(env.settings, burst=True, svc=env.svc, poll_delay=0.05)
    worker.functions["flaky"] = func(flaky, name="flaky")
    worker.functions["slow"] = func(slow, name="slow", timeout=0.2)
    await env.svc.redis.enqueue_job("flaky", _job_id="flaky")
    await env.svc.redis.enqueue_job("slow", _job_id="slow")
    try:
        async with asyncio.timeout(20):  # a guard against a hung run, not a speed check
            await worker.main()
    finally:
        await worker.close()
    assert tries == [1, 2]  # asked to retry, it ran again as its second try
    assert finished == []  # stopped at its timeout
    assert (worker.jobs_complete, worker.jobs_retried, worker.jobs_failed) == (1, 1, 1)
    assert await env.svc.redis.zcard(default_queue_name) == 0
