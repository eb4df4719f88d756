"""approval: a person decides whether the job goes on; handoff: a person acts in the live browser;
run_runbook: another runbook runs as a child job."""

from __future__ import annotations

from typing import Any

from orchestrator.runbooks.steps import Approval, Handoff, RunRunbook
from worker.actions import ActionFn
from worker.context import StepContext


async def approval(ctx: StepContext, step: Approval) -> dict[str, Any] | None:
    """The job waits on the same page (its browser kept) until approved, rejected, timed out or cancelled."""
    timeout = float(step.timeout) if step.timeout is not None else None
    remind = float(step.remind_every) if step.remind_every is not None else None
    who = {"approvers": step.approvers, "required": step.required, "remind_every": remind}
    return await ctx.ask(ctx, step.message, timeout, step.on_timeout, who)


async def handoff(ctx: StepContext, step: Handoff) -> dict[str, Any] | None:
    """The job is paused on its page for a person to act in the live browser; it goes on when `until`
    holds on the page or someone presses Resume, and the step fails when `timeout` runs out first."""
    assert ctx.hand_off is not None
    timeout = float(step.timeout) if step.timeout is not None else None
    until = step.until.model_dump(exclude_none=True) if step.until is not None else None
    return await ctx.hand_off(ctx, step.message, timeout, until)


async def run_runbook(ctx: StepContext, step: RunRunbook) -> dict[str, Any] | None:
    """Run another runbook as a child job and wait for it; its outputs go into captured[save_as]."""
    assert ctx.run_child is not None
    return await ctx.run_child(ctx, step)


ACTIONS: list[ActionFn] = [approval, handoff, run_runbook]
