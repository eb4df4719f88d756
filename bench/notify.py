"""From an approval request to the approver's mail (issue 19): a worker process and a scheduler process
(whose notifier sends the mail) with a real SMTP server (aiosmtpd). Each of RUNS jobs asks for an approval;
the time is from the request (`approval.requested_at`, as the worker stored it) to the mail's arrival."""

from __future__ import annotations

import asyncio
from typing import Any

from bench.harness import flush_redis, percentile, services, workspace
from bench.watching import process
from orchestrator import channels, jobs
from orchestrator.schemas.common import parse_time
from orchestrator.states import Action
from tests.receivers import smtp_server

RUNS = 30
ASKS = """name: asks
notify:
  - {on: [approval_requested], channel: approvers}
steps:
  - {action: set, values: {amount: 120}}
  - {action: approval, message: "Pay {{ captured.amount }}?"}
"""


async def _status(svc: Any, job_id: str, status: str) -> dict[str, Any]:
    async with asyncio.timeout(60):
        while (job := await jobs.get(svc, job_id))["status"] != status:
            await asyncio.sleep(0.02)
    return job


async def run(redis_url: str) -> list[tuple[str, str, str, str]]:
    await flush_redis(redis_url)
    delays = []
    with smtp_server() as inbox, workspace({"asks": ASKS}, redis_url) as settings:
        async with services(settings) as svc:
            sealer = channels.Sealer(settings.secret_key)
            await channels.add(svc.engine, sealer, "approvers", "email", ["ann@example.com"], None, "bench")
            extra = {"ORCH_SMTP_URL": inbox.url}
            with process(settings, "worker", **extra), process(settings, "scheduler", **extra):
                for number in range(RUNS):
                    job, _ = await jobs.create(svc, "asks", jobs.JobRequest())
                    waiting = await _status(svc, job["id"], "waiting_for_approval")
                    await asyncio.to_thread(inbox.wait, number + 1, 60)
                    asked = parse_time(waiting["approval"]["requested_at"]).timestamp()
                    delays.append((inbox.arrived[number] - asked) * 1000)
                    await jobs.act(svc, job["id"], Action.APPROVE, "bench")
                    await _status(svc, job["id"], "completed")
    return [
        (
            f"approval request to the approver's mail (SMTP server; {RUNS} requests, one at a time)",
            f"p50 {percentile(delays, 50):.0f} ms, p99 {percentile(delays, 99):.0f} ms",
            "-",
            "target: an approver can decide within a minute",
        )
    ]


if __name__ == "__main__":
    from bench.harness import redis_server

    with redis_server() as url:
        for row in asyncio.run(run(url)):
            print(" | ".join(row))
