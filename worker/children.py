"""The child run (run_runbook): start another runbook as a child job, wait for it holding no worker
slot, keep its outputs. The parent's page follows the child through `child` events."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from orchestrator import jobs
from orchestrator.db import tables as t
from orchestrator.errors import OrchestratorError, StepError
from orchestrator.events import Pending
from orchestrator.runbooks.steps import RunRunbook
from orchestrator.states import JobStatus
from worker.context import StepContext
from worker.deps import Deps
from worker.writer import RunWriter

#: How deep runbooks may call runbooks (the top job is depth 1).
MAX_DEPTH = 5
POLL_S = 0.25


class ChildRun:
    def __init__(self, deps: Deps, job_id: str, owner: str | None, writer: RunWriter) -> None:
        self.deps = deps
        self.job_id = job_id
        self.owner = owner  # the human who owns the job: its children are theirs
        self._writer = writer

    async def run(self, ctx: StepContext, step: RunRunbook) -> dict[str, Any]:
        chain = await self._ancestry()
        path = " → ".join([*chain, step.runbook])
        if step.runbook in chain:
            raise StepError(f"run_runbook would run {step.runbook} inside itself: {path}.")
        if len(chain) >= MAX_DEPTH:
            raise StepError(f"Runbooks may call runbooks at most {MAX_DEPTH} deep: {path}.")
        request = jobs.JobRequest(
            inputs=dict(step.inputs),
            source="runbook",
            actor=f"job:{self.job_id}",
            owner=self.owner,
            parent_id=self.job_id,
            # the same child again when a later attempt of this job reaches this step
            idempotency_key=f"child-of:{self.job_id}:{step.id}",
            internal=True,
        )
        try:
            child, _ = await jobs.create(self.deps.svc, step.runbook, request)
        except OrchestratorError as exc:
            fields = getattr(exc, "fields", None)
            detail = "; ".join(f"{k}: {v}" for k, v in fields.items()) if fields else exc.message
            raise StepError(f"The child job of {step.runbook} could not be started: {detail}") from None
        ctx.log("info", f"Started child job {child['id']} ({step.runbook}).")
        final = await self._follow_child(child)
        if final["status"] != JobStatus.COMPLETED.value:
            reason = (final.get("error") or {}).get("message") or final.get("summary") or ""
            raise StepError(f"Child job {child['id']} ({step.runbook}) {final['status']}: {reason}".rstrip(": "))
        if step.save_as:
            ctx.captured[step.save_as] = final.get("outputs") or {}
        return {"child": child["id"]}

    async def _follow_child(self, child: dict[str, Any]) -> dict[str, Any]:
        """Wait for the child to finish, holding no worker slot (the child may need it), and tell the
        parent's watchers each status it reaches."""
        child_id, last = child["id"], None
        self.deps.slots.park()
        try:
            while True:
                row = await self.deps.committer.read(
                    lambda conn: conn.execute(select(t.jobs.c.status).where(t.jobs.c.id == child_id)).first()
                )
                status = row.status if row is not None else JobStatus.CANCELLED.value
                if status != last:
                    last = status
                    event = {
                        "job_id": self.job_id,
                        "child": {"id": child_id, "runbook": child["runbook"], "status": status},
                    }
                    self._writer.write(events=[Pending(self.job_id, "child", event)])
                if JobStatus(status).finished:
                    return await jobs.get(self.deps.svc, child_id)
                await asyncio.sleep(POLL_S)
        finally:
            await self.deps.slots.unpark()

    async def _ancestry(self) -> list[str]:
        """The runbooks from the top job down to this one."""
        names: list[str] = []
        job_id: str | None = self.job_id
        while job_id is not None and len(names) <= MAX_DEPTH + 1:
            query = select(t.jobs.c.runbook, t.jobs.c.parent_id).where(t.jobs.c.id == job_id)
            row = await self.deps.committer.read(functools.partial(_first, query))
            if row is None:
                break
            names.append(row.runbook)
            job_id = row.parent_id
        return list(reversed(names))


def _first(query: Any, conn: Connection) -> Any:
    return conn.execute(query).first()
