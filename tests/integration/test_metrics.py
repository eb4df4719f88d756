"""GET /metrics: real jobs run by a real worker are counted once, the same figures come from every web
process over one Redis and database, gauges show the queue, the workers and this process's streams,
and only a `metrics` token (or an admin, or ORCH_METRICS_PUBLIC=1) may read it, and nothing else."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from orchestrator import jobs
from orchestrator.states import Action
from tests.integration.conftest import Env, bearer, http_client, live_server, running_worker, to_waiting, until

FINE = """
name: fine
steps:
  - {id: one, action: set, values: {a: 1}}
  - {id: two, action: set, values: {b: "{{ captured.a + 1 }}"}}
"""
BROKEN = """
name: broken
steps:
  - {id: one, action: set, values: {a: 1}}
  - {id: boom, action: set, values: {b: "{{ inputs.nowhere.deeper }}"}}
  - {id: never, action: set, values: {c: 3}}
"""
SLEEPER = """
name: sleeper
steps:
  - {id: nap, action: sleep, seconds: 60, timeout: 120}
"""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parsed(text: str) -> Samples:
    """Every sample of a scrape by its name and labels (parsed as Prometheus would: prometheus_client's parser)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, frozenset(labels.items())]


def cluster(samples: Samples) -> Samples:
    """The cluster-wide samples: not this process's own (its streams, CPU, memory)."""
    return {k: v for k, v in samples.items() if not k[0].startswith(("process_", "orchestrator_sse_"))}


@contextlib.asynccontextmanager
async def scraper(env: Env) -> AsyncIterator[httpx.AsyncClient]:
    """A web app of its own (its own Services) over the test's Redis and database, with a metrics token."""
    async with http_client(env.settings, role="metrics") as http:
        yield http


async def scrape(http: httpx.AsyncClient) -> Samples:
    answer = await http.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parsed(answer.text)


async def counted(http: httpx.AsyncClient, name: str, expected: float, **labels: str) -> Samples:
    """Scrape until the sample shows `expected` (a worker sends its counts within half a second)."""
    async with asyncio.timeout(20):  # a guard against a hang, not a speed check
        while True:
            samples = await scrape(http)
            if samples.get((name, frozenset(labels.items()))) == expected:
                return samples
            await asyncio.sleep(0.1)


async def test_real_jobs_are_counted_once_and_every_web_process_shows_the_same(any_db_env: Env) -> None:
    env = any_db_env
    env.write(FINE)
    env.write(BROKEN)
    fine = [await env.create("fine") for _ in range(2)]
    broken = await env.create("broken")
    await env.work()  # a real worker runs them, then stops (sending its last counts)
    cancelled = await env.create("fine")
    await jobs.act(env.svc, cancelled["id"], Action.CANCEL, "tester")  # cancelled before any run took it
    queued = await env.create("fine")
    waiting = await env.create("fine")
    await to_waiting(env, waiting["id"])
    assert [(await jobs.get(env.svc, j["id"]))["status"] for j in (*fine, broken)] == ["completed"] * 2 + ["failed"]

    async with scraper(env) as first, scraper(env) as second:
        one = await scrape(first)
        two = await scrape(second)
        text = (await first.get("/metrics")).text
    assert cluster(one) == cluster(two)  # the same figures from any web process

    assert value(one, "orchestrator_jobs_total", runbook="fine", status="completed") == 2
    assert value(one, "orchestrator_jobs_total", runbook="broken", status="failed") == 1
    assert value(one, "orchestrator_jobs_total", runbook="fine", status="cancelled") == 1
    assert {k for k in one if k[0] == "orchestrator_jobs_total"} == {
        ("orchestrator_jobs_total", frozenset({("runbook", "fine"), ("status", "completed")})),
        ("orchestrator_jobs_total", frozenset({("runbook", "broken"), ("status", "failed")})),
        ("orchestrator_jobs_total", frozenset({("runbook", "fine"), ("status", "cancelled")})),
    }

    # durations: one histogram per runbook, cumulative buckets ending at +Inf = the count of runs
    for runbook, runs in (("fine", 2), ("broken", 1)):
        assert value(one, "orchestrator_job_duration_seconds_count", runbook=runbook) == runs
        assert value(one, "orchestrator_job_duration_seconds_bucket", runbook=runbook, le="+Inf") == runs
        buckets = sorted(
            (float(dict(labels)["le"]), v)
            for (name, labels), v in one.items()
            if name == "orchestrator_job_duration_seconds_bucket" and dict(labels)["runbook"] == runbook
        )
        assert [v for _, v in buckets] == sorted(v for _, v in buckets)
        assert 0 < value(one, "orchestrator_job_duration_seconds_sum", runbook=runbook) < 60
    # the three runs started once each; the cancelled, queued and waiting jobs never did
    assert value(one, "orchestrator_job_start_delay_seconds_count") == 3
    assert value(one, "orchestrator_job_start_delay_seconds_bucket", le="+Inf") == 3
    assert value(one, "orchestrator_job_start_delay_seconds_sum") >= 0

    # steps: five succeeded (two per fine job, one of the broken one), one failed; `never` never ran
    assert value(one, "orchestrator_steps_total", action="set", status="success") == 5
    assert value(one, "orchestrator_steps_total", action="set", status="failed") == 1
    assert len([k for k in one if k[0] == "orchestrator_steps_total"]) == 2

    assert value(one, "orchestrator_jobs", status="queued") == 1
    assert value(one, "orchestrator_jobs", status="waiting_for_approval") == 1
    assert value(one, "orchestrator_jobs", status="running") == 0
    assert value(one, "orchestrator_jobs", status="paused") == 0
    assert value(one, "orchestrator_workers") == 0  # the worker stopped: it withdrew
    assert value(one, "orchestrator_worker_slots", state="busy") == 0
    assert value(one, "orchestrator_sse_connections") == 0
    assert value(one, "process_cpu_seconds_total") > 0
    assert value(one, "process_resident_memory_bytes") > 0

    for job in (*fine, broken, cancelled, queued, waiting):  # no job id in any label
        assert job["id"] not in text
    assert "tester" not in text


async def test_live_workers_their_slots_and_this_processs_streams(env: Env) -> None:
    env.write(SLEEPER)
    headers = await bearer(env.settings, "metrics")
    viewer = await bearer(env.settings, "viewer")
    async with running_worker(env, concurrency=3), live_server(env.settings) as url:
        job = await env.create("sleeper")
        await until(env, job["id"], "running")
        async with (
            httpx.AsyncClient(base_url=url, headers=headers) as web,
            httpx.AsyncClient(base_url=url, headers=viewer, timeout=30) as watcher,
            scraper(env) as elsewhere,
        ):
            async with watcher.stream("GET", f"/api/v1/jobs/{job['id']}/events") as stream:
                assert stream.status_code == 200
                here = await counted(web, "orchestrator_worker_slots", 1, state="busy")
                assert value(here, "orchestrator_sse_connections") == 1  # the stream this process serves
                there = await scrape(elsewhere)
            assert value(there, "orchestrator_sse_connections") == 0  # another web process holds none
            assert value(here, "orchestrator_workers") == 1
            assert value(here, "orchestrator_worker_slots", state="free") == 2
            assert value(here, "orchestrator_jobs", status="running") == 1
            assert cluster(here) == cluster(there)
            await jobs.act(env.svc, job["id"], Action.CANCEL, "tester")
            # counted by the worker whose run it cancelled, once, with the status that stands
            done = await counted(web, "orchestrator_jobs_total", 1, runbook="sleeper", status="cancelled")
            assert value(done, "orchestrator_job_duration_seconds_count", runbook="sleeper") == 1
            assert value(done, "orchestrator_steps_total", action="sleep", status="cancelled") == 1
            assert value(done, "orchestrator_jobs", status="running") == 0


async def test_a_redis_flush_starts_the_counters_again(env: Env) -> None:
    """The counters live in Redis: a flush resets them (Prometheus takes it as a counter reset)."""
    env.write(FINE)
    await env.create("fine")
    await env.work()
    async with scraper(env) as http:
        assert value(await scrape(http), "orchestrator_jobs_total", runbook="fine", status="completed") == 1
        client = aioredis.from_url(env.settings.redis)
        try:
            await client.flushall()
        finally:
            await client.aclose()
        assert not [k for k in await scrape(http) if k[0] == "orchestrator_jobs_total"]
        await env.create("fine")
        await env.work()
        assert value(await scrape(http), "orchestrator_jobs_total", runbook="fine", status="completed") == 1


async def test_only_a_metrics_token_or_an_admin_may_scrape_and_a_metrics_token_nothing_else(env: Env) -> None:
    async with http_client(env.settings, role=None) as anonymous:
        refused = await anonymous.get("/metrics")
        assert refused.status_code == 401 and refused.json()["error"]
    async with http_client(env.settings, role="viewer") as viewer:
        assert (await viewer.get("/metrics")).status_code == 403
    async with http_client(env.settings, role="admin") as admin:
        assert (await admin.get("/metrics")).status_code == 200
    async with http_client(env.settings, role="metrics") as scraper_token:
        assert (await scraper_token.get("/metrics")).status_code == 200
        for path in ("/api/v1/jobs", "/api/v1/workers", "/api/v1/runbooks", "/api/v1/schedules", "/jobs", "/workers"):
            answer = await scraper_token.get(path)
            assert answer.status_code == 403, (path, answer.status_code)
        assert (await scraper_token.post("/api/v1/runbooks/fine/jobs", json={})).status_code == 403
    public = replace(env.settings, metrics_public=True)
    async with http_client(public, role=None) as anonymous:
        assert (await anonymous.get("/metrics")).status_code == 200
        assert (await anonymous.get("/api/v1/jobs")).status_code == 401  # only /metrics opens
