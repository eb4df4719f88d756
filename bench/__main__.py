"""`make bench`: throughput, start latency and browser overhead, each beside its baseline.

Writes bench/results.md (a table) and prints it. `python -m bench throughput` runs only the
throughput rows (SQLite, PostgreSQL with one worker and with two) and prints them; `python -m bench
cluster` only the cluster row (bench/cluster.py), `python -m bench notify` only the approval-mail row,
`python -m bench takeover` only the input-to-frame row.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from arq import Worker
from arq.connections import create_pool
from sqlalchemy import select

from bench import cluster, control, joblist, metrics, notify, takeover, watching
from bench.harness import (
    THREE_STEPS,
    cpu_seconds,
    flush_redis,
    machine_busy,
    percentile,
    postgres,
    redis_server,
    services,
    static_site,
    worker_env,
    worker_processes,
    worker_ready,
    workers_listening,
    workspace,
)
from orchestrator import jobs, queue
from orchestrator.db import tables as t
from orchestrator.db.engine import reading

HERE = Path(__file__).parent
JOBS = int(os.environ.get("BENCH_JOBS", "2000"))
THROUGHPUT_RUNS = int(os.environ.get("BENCH_RUNS", "3"))
#: Each worker's concurrency in the throughput rows.
CONCURRENCY = 10
CORES = os.cpu_count() or 1
BROWSER_RUNS = 5


async def noop(ctx: dict[str, Any]) -> None:
    return None


async def bare_arq(redis_url: str, count: int) -> float:
    await flush_redis(redis_url)
    pool = await create_pool(queue.redis_settings(redis_url))
    for _ in range(count):
        await pool.enqueue_job("noop")
    worker = Worker(
        functions=[noop],
        redis_settings=queue.redis_settings(redis_url),
        burst=True,
        max_jobs=CONCURRENCY,
        poll_delay=0.05,
        keep_result=0,
        handle_signals=False,
    )
    started = time.perf_counter()
    await worker.main()
    elapsed = time.perf_counter() - started
    await worker.close()
    await pool.aclose()
    return count / elapsed


async def ours(redis_url: str, count: int, on_postgres: bool = False) -> tuple[float, int]:
    from worker.main import build_worker

    await flush_redis(redis_url)
    with workspace({"three": THREE_STEPS}, redis_url) as sqlite:
        async with contextlib.AsyncExitStack() as stack:
            settings = await stack.enter_async_context(postgres(sqlite)) if on_postgres else sqlite
            svc = await stack.enter_async_context(services(settings))
            for _ in range(count):
                await jobs.create(svc, "three", jobs.JobRequest())
            worker = build_worker(settings, burst=True, concurrency=CONCURRENCY, svc=svc)
            started = time.perf_counter()
            await worker.main()
            commits = worker.ctx["deps"].committer
            await worker.close()  # the last writes commit here: a job counts once it is completed in the database
            elapsed = time.perf_counter() - started
            commits = commits.commits
            done = await _count(svc, "completed")
            assert done == count, f"only {done} of {count} jobs completed"
            steps = await _succeeded_steps(svc)
            assert steps == 3 * count, f"{steps} of {3 * count} steps succeeded"
    return count / elapsed, commits


async def on_postgres_workers(redis_url: str, count: int, workers: int) -> tuple[float, dict[str, float]]:
    """`count` three-step jobs drained by `workers` worker processes (`orchestrator worker`, as in
    production, CONCURRENCY each) on one PostgreSQL. The jobs are made first and held off the
    queue until every worker has started; the clock runs from their release to the last job
    completed in the database. Returns jobs/s and the cores kept busy meanwhile: by the workers
    (with their writer processes), by PostgreSQL (the database's backends), by the whole machine."""
    from redis.asyncio import Redis

    from orchestrator.keys import WAKE_CHANNEL

    await flush_redis(redis_url)
    held = "bench:held"
    with workspace({"three": THREE_STEPS}, redis_url) as sqlite:
        async with postgres(sqlite) as settings, services(settings) as svc:
            for _ in range(count):
                await jobs.create(svc, "three", jobs.JobRequest())
            client = Redis.from_url(redis_url)
            try:
                await client.rename(svc.redis.default_queue_name, held)
                with worker_processes(settings, workers, CONCURRENCY) as processes:
                    await workers_listening(redis_url, workers)
                    groups = {process.pid for process in processes}
                    backends = f" {settings.database_url.rsplit('/', 1)[1]} "  # "postgres: 15/main: USER DATABASE HOST"

                    def cpu() -> tuple[float, float, float, float]:
                        return (cpu_seconds(groups), cpu_seconds(command=backends), *machine_busy())

                    before = cpu()
                    started = time.perf_counter()
                    await client.rename(held, svc.redis.default_queue_name)
                    await client.publish(WAKE_CHANNEL, "bench")
                    while (done := await _count(svc, "completed")) < count:
                        if time.perf_counter() - started > 300:
                            raise TimeoutError(f"only {done} of {count} jobs completed in 300 s")
                        await asyncio.sleep(0.02)
                    elapsed = time.perf_counter() - started
                    after = cpu()
            finally:
                await client.aclose()
            steps = await _succeeded_steps(svc)
            assert steps == 3 * count, f"{steps} of {3 * count} steps succeeded"
    used = [a - b for a, b in zip(after, before, strict=True)]
    cores = {"workers": used[0] / elapsed, "postgres": used[1] / elapsed, "machine": used[2] / used[3] * CORES}
    return count / elapsed, cores


async def throughput(redis_url: str) -> list[tuple[str, str, str, str]]:
    """Bare arq, ours on SQLite, ours on PostgreSQL (one worker in this process, as the SQLite row;
    then one and two worker processes), alternating within each run: on a shared machine whole
    runs drift, so each ratio is taken within a run, and the median of the runs' ratios is given."""
    # A short warm-up of each (imports, caches, the writer's forkserver).
    await bare_arq(redis_url, JOBS // 10)
    await ours(redis_url, JOBS // 10)
    await ours(redis_url, JOBS // 10, on_postgres=True)
    rates: dict[str, list[float]] = {"arq": [], "sqlite": [], "pg": [], "pg1": [], "pg2": []}
    busy: dict[str, list[dict[str, float]]] = {"pg1": [], "pg2": []}
    commits = 0
    for _ in range(THROUGHPUT_RUNS):
        rates["arq"].append(await bare_arq(redis_url, JOBS))
        rate, commits = await ours(redis_url, JOBS)
        rates["sqlite"].append(rate)
        rates["pg"].append((await ours(redis_url, JOBS, on_postgres=True))[0])
        for workers in (1, 2):
            rate, cores = await on_postgres_workers(redis_url, JOBS, workers)
            rates[f"pg{workers}"].append(rate)
            busy[f"pg{workers}"].append(cores)

    def spread(name: str) -> str:
        values = rates[name]
        return f"{statistics.median(values):.0f} jobs/s ({min(values):.0f} to {max(values):.0f})"

    def cores(name: str) -> str:
        median = {key: statistics.median(run[key] for run in busy[name]) for key in busy[name][0]}
        return (
            f"{median['workers']:.2f} cores busy in the workers and their writers, {median['postgres']:.2f} in"
            f" PostgreSQL, {median['machine']:.2f} of {CORES} in the machine"
        )

    def ratio(name: str, base: str) -> str:
        return f"{statistics.median(a / b for a, b in zip(rates[name], rates[base], strict=True)):.2f} x"

    arq = f"bare arq no-op: {spread('arq')}"
    runs = f"median of {THROUGHPUT_RUNS} runs"
    return [
        (
            f"throughput, {JOBS} three-step jobs, concurrency {CONCURRENCY} ({runs})",
            spread("sqlite"),
            arq,
            f"{ratio('sqlite', 'arq')} (target >= 0.5; {commits} commits)",
        ),
        ("the same on PostgreSQL (one worker)", spread("pg"), arq, f"{ratio('pg', 'arq')} (target >= 0.5)"),
        (
            f"two worker processes on one PostgreSQL vs one (concurrency {CONCURRENCY} each)",
            f"{spread('pg2')}; {cores('pg2')}",
            f"one worker process: {spread('pg1')}; {cores('pg1')}",
            f"{ratio('pg2', 'pg1')} (target >= 1.6)",
        ),
    ]


async def _count(svc: Any, status: str) -> int:
    from sqlalchemy import func

    async with reading(svc.engine) as conn:
        return (await conn.execute(select(func.count()).where(t.jobs.c.status == status))).scalar() or 0


async def _succeeded_steps(svc: Any) -> int:
    from sqlalchemy import func

    async with reading(svc.engine) as conn:
        return (await conn.execute(select(func.count()).where(t.steps.c.status == "success"))).scalar() or 0


async def latency(redis_url: str, count: int = 200, rate: float = 20.0) -> tuple[float, float]:
    """Enqueue-to-first-step at a steady rate, the worker in its own process as in production."""
    await flush_redis(redis_url)
    with workspace({"three": THREE_STEPS}, redis_url) as settings:
        worker = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "worker"],
            env=worker_env(settings, 10),
            stderr=subprocess.DEVNULL,
        )
        try:
            async with services(settings) as svc:
                await worker_ready(redis_url)
                ids = []
                for _ in range(count):
                    began = time.perf_counter()
                    ids.append((await jobs.create(svc, "three", jobs.JobRequest()))[0]["id"])
                    await asyncio.sleep(max(0.0, 1 / rate - (time.perf_counter() - began)))
                while await _count(svc, "completed") < count:
                    await asyncio.sleep(0.2)
                async with reading(svc.engine) as conn:
                    rows = (
                        await conn.execute(
                            select(t.jobs.c.created_at, t.steps.c.started_at)
                            .join(t.steps, t.steps.c.job_id == t.jobs.c.id)
                            .where(t.steps.c.position == 0)
                        )
                    ).all()
        finally:
            worker.terminate()
            worker.wait()
    waits = [(_utc(r.started_at) - _utc(r.created_at)).total_seconds() * 1000 for r in rows]
    return percentile(waits, 50), percentile(waits, 99)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def browser_runbook(screenshots: bool) -> str:
    shot = "" if screenshots else "    screenshot: never\n"
    steps = ['  - action: goto\n    url: "{{ site.url }}/form.html"\n' + shot]
    for i in range(1, 10):
        steps.append(f'  - action: fill\n    selector: "#f{i}"\n    value: "value {i}"\n' + shot)
        steps.append(f'  - action: click\n    selector: "#b{i}"\n' + shot)
    steps.append('  - action: extract\n    selector: "#out"\n    save_as: out\n' + shot)
    return "name: twenty\nsettings: {step_timeout: 10}\nsteps:\n" + "".join(steps)


FORM = (
    """<!doctype html><html><body><form>
"""
    + "".join(f'<input id="f{i}"><button type="button" id="b{i}">B{i}</button>\n' for i in range(1, 10))
    + """
</form><div id="out">0</div><script src="form.js"></script></body></html>"""
)
FORM_JS = (
    "let n = 0; document.querySelectorAll('button').forEach(b => b.addEventListener('click', () => {"
    " n += 1; document.getElementById('out').textContent = String(n); }));"
)


async def bare_playwright(url: str, browser_path: str | None) -> float:
    from playwright.async_api import async_playwright

    from worker.browser import CHROMIUM_ARGS

    started = time.perf_counter()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=browser_path, args=CHROMIUM_ARGS)
        context = await browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 800})
        page = await context.new_page()
        await page.goto(f"{url}/form.html")
        for i in range(1, 10):
            await page.locator(f"#f{i}").fill(f"value {i}")
            await page.locator(f"#b{i}").click()
        text = await page.locator("#out").inner_text()
        assert text == "9", text
        await context.close()
        await browser.close()
    return time.perf_counter() - started


async def browser_job(redis_url: str, url: str, screenshots: bool) -> float:
    from worker.main import build_worker

    await flush_redis(redis_url)
    with workspace({"twenty": browser_runbook(screenshots)}, redis_url, url) as settings:
        async with services(settings) as svc:
            job, _ = await jobs.create(svc, "twenty", jobs.JobRequest())
            worker = build_worker(settings, burst=True, concurrency=1, svc=svc)
            started = time.perf_counter()
            await worker.main()
            elapsed = time.perf_counter() - started
            await worker.close()
            result = await jobs.get(svc, job["id"])
            assert result["status"] == "completed", result["error"]
            assert result["outputs"] is not None
    return elapsed


def table(rows: list[tuple[str, str, str, str]]) -> str:
    lines = ["| benchmark | orchestrator | baseline | ratio / target |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, SQLite"
    return f"# Benchmark results\n\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine}\n\n" + "\n".join(lines) + "\n"


async def main(sections: list[str]) -> None:
    alone = {"throughput": throughput, "cluster": cluster.run, "notify": notify.run, "takeover": takeover.run}
    if len(sections) == 1 and sections[0] in alone:
        with redis_server() as redis_url:
            print(table(await alone[sections[0]](redis_url)))
        return
    if sections:
        raise SystemExit(f"usage: python -m bench [{' | '.join(alone)}] (got {' '.join(sections)})")
    rows: list[tuple[str, str, str, str]] = []
    with redis_server() as redis_url:
        rows += await throughput(redis_url)
        p50, p99 = await latency(redis_url)
        rows.append(
            (
                "enqueue-to-first-step latency at 20 jobs/s",
                f"p50 {p50:.1f} ms, p99 {p99:.1f} ms",
                "-",
                "target p99 < 60 ms",
            )
        )
        site = HERE / "site"
        site.mkdir(exist_ok=True)
        (site / "form.html").write_text(FORM)
        (site / "form.js").write_text(FORM_JS)
        with static_site(site) as url, workspace({}, redis_url) as settings:
            path = settings.browser_path
            # alternating runs, the fastest of each: on a shared machine a block of runs drifts as a whole
            bares, plains, shotss = [], [], []
            for _ in range(BROWSER_RUNS):
                bares.append(await bare_playwright(url, path))
                plains.append(await browser_job(redis_url, url, False))
                shotss.append(await browser_job(redis_url, url, True))
            bare, plain, shots = min(bares), min(plains), min(shotss)
            steering = await control.run(redis_url, url)
        rows.append(
            (
                "20-step browser runbook, no screenshots (incl. browser start)",
                f"{plain:.2f} s",
                f"bare Playwright: {bare:.2f} s",
                f"{plain / bare:.2f} x (target <= 1.15)",
            )
        )
        rows.append(
            (
                "20-step browser runbook, screenshot after every step",
                f"{shots:.2f} s",
                f"bare Playwright: {bare:.2f} s",
                f"{shots / bare:.2f} x (screenshots cost extra)",
            )
        )
    rows += steering
    with redis_server() as redis_url:
        rows += await joblist.run(redis_url)
        rows += await metrics.run(redis_url)
        rows += await notify.run(redis_url)
        rows += await takeover.run(redis_url)
    with redis_server() as redis_url:
        rows += await watching.run(redis_url)
    with redis_server() as redis_url:
        rows += await cluster.run(redis_url)
    text = table(rows)
    (HERE / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    from worker.main import fast_loop

    fast_loop()  # the loop the worker runs on; bare arq runs on it too
    asyncio.run(main(sys.argv[1:]))
