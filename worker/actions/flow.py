"""approval: a person decides whether the job goes on."""

from __future__ import annotations

from typing import Any

from orchestrator.runbooks.steps import Approval
from worker.context import StepContext


async def approval(ctx: StepContext, step: Approval) -> dict[str, Any] | None:
    """The job waits on the same page (its browser kept) until approved, rejected, timed out or cancelled."""
    timeout = float(step.timeout) if step.timeout is not None else None
    return await ctx.ask(ctx, step.message, timeout, step.on_timeout)


ACTIONS = [approval]
