"""click, fill, press, select, check, uncheck, upload."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Locator

from orchestrator.errors import StepError
from orchestrator.runbooks.steps import Check, Click, Fill, Press, Select, Uncheck, Upload
from worker.actions import ActionFn
from worker.actions.locate import _first_line, locate
from worker.context import StepContext


async def _do(ctx: StepContext, what: str, locator: Locator, call: Any) -> None:
    try:
        await call
    except PlaywrightError as exc:
        raise StepError(ctx.mask_text(f"Could not {what}: {_first_line(exc)}")) from None


#: Paints a field's text over with its own box colour: what the screencast shows of a secret.
HIDE_TEXT = """el => {
  for (const [name, value] of [["color", "transparent"], ["-webkit-text-fill-color", "transparent"],
      ["text-shadow", "none"], ["caret-color", "transparent"], ["background-color", "#3b3b4f"]]) {
    el.style.setProperty(name, value, "important");
  }
}"""


async def click(ctx: StepContext, step: Click) -> dict[str, Any] | None:
    target = await locate(ctx, step.selector, state="visible")
    await _do(ctx, "click", target, target.click(timeout=ctx.timeout_ms))
    return None


async def fill(ctx: StepContext, step: Fill) -> dict[str, Any] | None:
    target = await locate(ctx, step.selector, state="visible")
    value = str(step.value)
    if any(secret and secret in value for secret in ctx.secrets):  # masked in every later screenshot
        ctx.masks.append(target)
        # and hidden in the page itself before it is typed, for the live view and the video
        await _do(ctx, "hide the field", target, target.evaluate(HIDE_TEXT))
    await _do(ctx, "fill the field", target, target.fill(value, timeout=ctx.timeout_ms))
    return None


async def press(ctx: StepContext, step: Press) -> dict[str, Any] | None:
    target = await locate(ctx, step.selector, state="visible")
    await _do(ctx, f"press {step.key}", target, target.press(step.key, timeout=ctx.timeout_ms))
    return None


async def select(ctx: StepContext, step: Select) -> dict[str, Any] | None:
    target = await locate(ctx, step.selector, state="visible")
    wanted = [step.value] if isinstance(step.value, str) else step.value
    try:
        options = await target.evaluate("s => Array.from(s.options || []).map(o => [o.value, o.label])")
    except PlaywrightError as exc:
        raise StepError(f"Could not read the options of {step.selector!r}: {_first_line(exc)}") from None
    values, labels = {v for v, _ in options}, {label for _, label in options}
    if all(w in values for w in wanted):
        call = target.select_option(value=wanted, timeout=ctx.timeout_ms)
    elif all(w in labels for w in wanted):
        call = target.select_option(label=wanted, timeout=ctx.timeout_ms)
    else:
        missing = ", ".join(w for w in wanted if w not in values and w not in labels)
        shown = ", ".join(label for _, label in options[:20]) or "none"
        raise StepError(f"Could not select {missing}: {step.selector!r} has no such option (it offers {shown}).")
    await _do(ctx, f"select {', '.join(wanted)}", target, call)
    return {"selected": wanted}


async def check(ctx: StepContext, step: Check) -> dict[str, Any] | None:
    target = await locate(ctx, step.selector, state="visible")
    await _do(ctx, "check the box", target, target.check(timeout=ctx.timeout_ms))
    return None


async def uncheck(ctx: StepContext, step: Uncheck) -> dict[str, Any] | None:
    target = await locate(ctx, step.selector, state="visible")
    await _do(ctx, "uncheck the box", target, target.uncheck(timeout=ctx.timeout_ms))
    return None


async def upload(ctx: StepContext, step: Upload) -> dict[str, Any] | None:
    ref = step.file
    if not isinstance(ref, dict) or "artifact_id" not in ref:
        raise StepError(
            "upload needs `file` to be a file input or a file saved earlier in this job "
            '(for example "{{ inputs.attachment }}" or "{{ captured.statement }}").'
        )
    row, content = await ctx.load_artifact(str(ref["artifact_id"]))
    target = await locate(ctx, step.selector)
    files = {"name": row["name"], "mimeType": row["mime_type"], "buffer": content}
    await _do(ctx, "set the file", target, target.set_input_files(files, timeout=ctx.timeout_ms))  # type: ignore[arg-type]
    return {"uploaded": row["name"]}


ACTIONS: list[ActionFn] = [click, fill, press, select, check, uncheck, upload]
