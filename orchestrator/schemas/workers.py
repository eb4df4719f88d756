"""The worker registry as the API shows it (GET /api/v1/workers; orchestrator/workers.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from orchestrator.schemas.common import Response, Stamp


class Worker(Response):
    id: str = Field(description="HOST:PID, as a job's `robot` names the worker that ran it")
    host: str
    pid: int
    version: str = Field(description="the orchestrator's version the worker runs")
    concurrency: int = Field(description="jobs the worker runs at once (ORCH_WORKER_CONCURRENCY)")
    busy_slots: int = Field(description="slots its jobs hold now (a job waiting for approval holds none)")
    running_jobs: list[str] = Field(description="the ids of the jobs it runs now, as of its last heartbeat")
    started_at: Stamp
    last_seen_at: Stamp = Field(description="its last heartbeat")
    status: Literal["live", "lost"] = Field(description="lost: no heartbeat for ORCH_WORKER_LOST_S")


class WorkerList(Response):
    items: list[Worker]
