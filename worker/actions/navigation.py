"""goto, wait_for, sleep."""

from __future__ import annotations

import asyncio
from typing import Any

from playwright.async_api import Error as PlaywrightError

from orchestrator.errors import StepError, StepTimeout
from orchestrator.runbooks.steps import Goto, Sleep, WaitFor
from worker.actions.locate import _first_line, locate
from worker.context import StepContext


async def goto(ctx: StepContext, step: Goto) -> dict[str, Any] | None:
    if why := ctx.policy.refusal(step.url):
        raise StepError(f"The URL {step.url!r} is refused: {why}.")
    page = await ctx.page()
    try:
        response = await page.goto(step.url, wait_until=step.wait_until, timeout=ctx.timeout_ms)
    except PlaywrightError as exc:
        raise StepError(f"Could not open {step.url}: {_first_line(exc)}") from None
    if response is not None and response.status >= 400:
        raise StepError(f"{step.url} answered HTTP {response.status}.")
    return None


async def wait_for(ctx: StepContext, step: WaitFor) -> dict[str, Any] | None:
    page = await ctx.page()
    if step.url is not None:
        try:
            await page.wait_for_url(step.url, timeout=ctx.timeout_ms)
        except PlaywrightError:
            raise StepTimeout(f"The page did not reach {step.url} (it is at {page.url}).") from None
    if step.selector is not None:
        if step.state in ("attached", "visible"):
            target = await locate(ctx, step.selector, state=step.state)
        else:
            target = page.locator(step.selector if isinstance(step.selector, str) else step.selector[0]).first
        try:
            await target.wait_for(state=step.state, timeout=ctx.timeout_ms)
        except PlaywrightError:
            raise StepTimeout(f"{step.selector!r} did not become {step.state}.") from None
    return None


async def sleep(ctx: StepContext, step: Sleep) -> dict[str, Any] | None:
    if step.seconds > ctx.remaining + 0.1:  # a sleep as long as the step's limit is fine
        raise StepTimeout(f"Sleeping {step.seconds:g} s would exceed the step's time limit.")
    await asyncio.sleep(float(step.seconds))
    return None


ACTIONS = [goto, wait_for, sleep]
