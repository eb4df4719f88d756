"""The jobs a finished run's triggers start (`triggers:` of a runbook), once its end is committed."""

from __future__ import annotations

import asyncio
from typing import Any

from orchestrator import jobs, templating
from orchestrator.errors import OrchestratorError
from orchestrator.events import Pending
from orchestrator.jobs import JobRequest
from orchestrator.runbooks.schema import Runbook
from orchestrator.services import Services
from worker.tally import End
from worker.writer import RunWriter


async def fire(
    svc: Services,
    writer: RunWriter,
    owner: str | None,
    runbook: Runbook,
    scope: dict[str, Any],
    end: End,
    finished: asyncio.Future[Any],
) -> None:
    """Start the jobs this runbook's triggers ask for, once its end (`finished`) is committed. Each has
    an idempotency key of this job and the trigger's place, so a trigger never starts two. The jobs
    are `owner`'s, the human who owns this one."""
    try:
        await finished
    except Exception:  # noqa: BLE001 - the end was not recorded (reported by the committer): no triggers
        return
    job_id, status = writer.job_id, end.status
    context = {**scope, "outputs": end.outputs, "job": {**scope["job"], "status": status.value}}
    events: list[Pending] = []
    for index, trigger in enumerate(runbook.triggers):
        if trigger.on != "finished" and trigger.on != status.value:
            continue
        try:
            request = JobRequest(
                inputs=templating.render(trigger.inputs, context),
                source="trigger",
                actor=f"job:{job_id}",
                owner=owner,
                idempotency_key=f"trigger:{job_id}:{index}",
                internal=True,
                data={"triggered_by": job_id},
            )
            child, _ = await jobs.create(svc, trigger.runbook, request)
            events.append(writer.log("info", f"Trigger {index + 1} started job {child['id']} of {trigger.runbook}."))
        except OrchestratorError as exc:
            fields = getattr(exc, "fields", None)
            detail = "; ".join(f"{k}: {v}" for k, v in fields.items()) if fields else exc.message
            events.append(writer.log("error", f"Trigger {index + 1} could not start {trigger.runbook}: {detail}"))
    if events:
        writer.write(events=events)
