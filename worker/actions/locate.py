"""Find the element a step means: a selector or a list of fallbacks tried in order."""

from __future__ import annotations

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Locator

from orchestrator.errors import StepError, StepTimeout
from worker.context import StepContext


async def locate(ctx: StepContext, selector: str | list[str], state: str = "attached") -> Locator:
    """The first candidate that matches, waiting up to the step's time for any of them.

    Each candidate that misses before the one used counts as a retry of the step.
    """
    page = await ctx.page()
    candidates = [selector] if isinstance(selector, str) else list(selector)
    if not candidates:
        raise StepError("The selector list is empty.")
    for attempt in range(2):
        for index, candidate in enumerate(candidates):
            locator = page.locator(candidate)
            try:
                if await locator.count() > 0:
                    ctx.retries += index
                    return locator.first
            except PlaywrightError as exc:
                raise StepError(f"The selector {candidate!r} is not valid: {_first_line(exc)}") from None
        if attempt == 0:
            await _wait_any(ctx, page.locator(candidates[0]), candidates, state)
    raise _missing(candidates, ctx)


async def _wait_any(ctx: StepContext, first: Locator, candidates: list[str], state: str) -> None:
    combined = first
    for candidate in candidates[1:]:
        combined = combined.or_(first.page.locator(candidate))
    try:
        await combined.first.wait_for(state=state, timeout=ctx.timeout_ms)  # type: ignore[arg-type]
    except PlaywrightError:
        raise _missing(candidates, ctx) from None


def _missing(candidates: list[str], ctx: StepContext) -> StepTimeout:
    ctx.retries += max(0, len(candidates) - 1)
    shown = " or ".join(repr(c) for c in candidates)
    return StepTimeout(f"No element matches {shown}.")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
