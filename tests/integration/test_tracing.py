"""Job traces in one process against a real OTLP/HTTP receiver: the exporter runs only when tracing is on,
its last spans go out when the services close, and a job enqueued again from the database (Redis lost
it) runs without a link, as a job that carried its enqueue's context runs with one."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import redis.asyncio as aioredis

from orchestrator import queue
from orchestrator.config import Settings
from orchestrator.services import Services
from tests.integration.conftest import Env
from tests.otlp import attributes, otlp_receiver

RUNBOOK = """
name: traced
steps:
  - id: first
    action: set
    values: {a: 1}
  - id: second
    action: sleep
    seconds: 0
"""


def exporter_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("OtelBatch")]


async def test_tracing_off_opens_no_exporter(env: Env) -> None:
    assert env.svc.tracing is None
    assert exporter_threads() == []


async def test_a_job_enqueued_again_from_the_database_runs_without_a_link(settings: Settings, redis_url: str) -> None:
    with otlp_receiver() as receiver:
        traced = replace(settings, otel_endpoint=receiver.url)
        svc = await Services.open(traced, "orchestrator-test")
        assert exporter_threads() == ["OtelBatchSpanRecordProcessor"]
        env = Env(traced, svc)
        try:
            name = env.write(RUNBOOK)
            carried = await env.create(name)
            await env.work()
            lost = await env.create(name)
            client = aioredis.from_url(redis_url)
            try:
                await client.flushall()  # Redis forgets the queued job; the database still has it
            finally:
                await client.aclose()
            assert await queue.reconcile(svc.engine, svc.redis, older_than=timedelta(0)) == 1
            await env.work()
        finally:
            await svc.close()  # sends what the batch still holds
        assert exporter_threads() == []
        spans = receiver.spans()
    assert {service for service, _ in spans} == {"orchestrator-test"}
    enqueues = {attributes(s)["orchestrator.job.id"]: s for _, s in spans if s.name == "enqueue traced"}
    runs = {attributes(s)["orchestrator.job.id"]: s for _, s in spans if s.name == "run traced"}
    assert set(enqueues) == set(runs) == {carried["id"], lost["id"]}  # the reconciler's enqueue makes no span
    [link] = runs[carried["id"]].links
    assert (link.trace_id, link.span_id) == (enqueues[carried["id"]].trace_id, enqueues[carried["id"]].span_id)
    assert list(runs[lost["id"]].links) == []
    for job_id, run in runs.items():
        assert attributes(run)["orchestrator.job.status"] == "completed", job_id
        steps = [s for _, s in spans if s.trace_id == run.trace_id and s.parent_span_id == run.span_id]
        assert [attributes(s)["orchestrator.step.id"] for s in steps] == ["first", "second"]
