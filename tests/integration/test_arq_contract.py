"""The worker claims arq's jobs its own way (one script for the claim and the job's payload and try),
and keeps arq's rules: a job runs at most `max_tries` times, and a job arq cannot run is reported
and removed from the queue without stopping the others."""

from __future__ import annotations

import logging

import pytest
from arq.constants import default_queue_name, job_key_prefix, retry_key_prefix

from orchestrator import jobs, queue
from tests.integration.conftest import Env

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
