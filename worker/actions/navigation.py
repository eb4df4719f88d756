"""goto, wait_for, sleep."""

from __future__ import annotations

import asyncio
from typing import Any

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Request, Response

from orchestrator.errors import StepError, StepTimeout
from orchestrator.runbooks.steps import Goto, Sleep, WaitFor
from worker.actions import ActionFn
from worker.actions.locate import _first_line, locate
from worker.context import StepContext
from worker.proxy import PROXY_HEADER


async def goto(ctx: StepContext, step: Goto) -> dict[str, Any] | None:
    """Open `step.url`. A request the browser's proxy refused on the way (a redirect, a frame) does not fail
    here: the session's check of where the page went fails the step with it, naming the URL and why."""
    verdict = await ctx.policy.check_url(step.url)
    if verdict.refusal is not None:
        raise StepError(f"The URL {step.url!r} is refused: {verdict.refusal}.")
    if verdict.failure is not None:
        raise StepError(f"Could not open {step.url}: {verdict.failure}.")
    page = await ctx.page()
    failed: list[str] = []  # what failed on the way: a tunnel the proxy refused is among them

    def note(request: Request) -> None:
        failed.append(request.url)

    page.on("requestfailed", note)
    try:
        response = await page.goto(step.url, wait_until=step.wait_until, timeout=ctx.timeout_ms)
    except PlaywrightError as exc:
        if await _refused(ctx, failed):
            return None
        raise StepError(_not_opened(step.url, _first_line(exc))) from None
    finally:
        page.remove_listener("requestfailed", note)
    if response is not None and response.status >= 400:
        if response.headers.get(PROXY_HEADER) == "403":
            return None
        raise StepError(await _answered(step.url, response))
    return None


async def _refused(ctx: StepContext, urls: list[str]) -> bool:
    """Whether the policy refuses any of these (the first refused one ends the look)."""
    for url in urls:
        if (await ctx.policy.check_url(url)).refusal:
            return True
    return False


def _not_opened(url: str, error: str) -> str:
    if "ERR_TUNNEL_CONNECTION_FAILED" in error:  # the proxy could not connect (it refused nothing)
        return f"Could not open {url}: the worker could not connect to it ({error})."
    return f"Could not open {url}: {error}"


async def _answered(url: str, response: Response) -> str:
    if response.headers.get(PROXY_HEADER) is None:  # the site's own answer
        return f"{url} answered HTTP {response.status}."
    said = (await response.text()).strip()  # the proxy's one sentence: it could not reach the host
    return f"Could not open {response.url}: {said[:1].lower()}{said[1:]}"


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
    seconds = float(step.seconds)  # rendered from a template by now
    if seconds > ctx.remaining + 0.1:  # a sleep as long as the step's limit is fine
        raise StepTimeout(f"Sleeping {seconds:g} s would exceed the step's time limit.")
    await asyncio.sleep(seconds)
    return None


ACTIONS: list[ActionFn] = [goto, wait_for, sleep]
