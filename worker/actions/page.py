"""extract, assert, screenshot, download: reading the page."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
from pathlib import Path
from typing import Any

from playwright.async_api import Download as BrowserDownload
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Locator

from orchestrator.artifacts import ArtifactStore, ArtifactTooLarge
from orchestrator.errors import StepError
from orchestrator.runbooks.steps import Assert, Download, Extract, Screenshot
from worker.actions import ActionFn
from worker.actions.locate import _first_line, locate
from worker.context import StepContext

#: How often a running download's size is looked at (see `_finished`).
GROWTH_POLL_S = 0.1

# Header keys come from textContent, so CSS such as text-transform does not change them.
_TABLE_JS = """(table) => {
  const clean = (cell) => (cell.textContent || '').replace(/\\s+/g, ' ').trim();
  let headerCells = Array.from(table.querySelectorAll('thead th, thead td'));
  let rows = Array.from(table.querySelectorAll('tbody tr'));
  if (!rows.length) rows = Array.from(table.querySelectorAll('tr'));
  if (!headerCells.length && rows.length) { headerCells = Array.from(rows[0].cells); rows = rows.slice(1); }
  const keys = headerCells.map((cell, i) => clean(cell) || `column_${i + 1}`);
  return rows.filter((row) => row.cells.length).map((row) => {
    const item = {};
    Array.from(row.cells).forEach((cell, i) => { item[keys[i] || `column_${i + 1}`] = clean(cell); });
    return item;
  });
}"""


async def _read(ctx: StepContext, target: Locator, step: Extract) -> Any:
    if step.table:
        return await target.evaluate(_TABLE_JS)
    field = await target.evaluate("e => ['INPUT', 'TEXTAREA', 'SELECT'].includes(e.tagName)")
    if field and step.attribute in (None, "value"):
        return await target.input_value(timeout=ctx.timeout_ms)  # what is in the field now, not its HTML
    if step.attribute:
        return await target.get_attribute(step.attribute, timeout=ctx.timeout_ms)
    return (await target.inner_text(timeout=ctx.timeout_ms)).strip()


async def extract(ctx: StepContext, step: Extract) -> dict[str, Any] | None:
    target = await locate(ctx, step.selector)
    try:
        if step.all:
            matches = target.page.locator(await _matching(target, step.selector))
            value: Any = [await _read(ctx, matches.nth(i), step) for i in range(await matches.count())]
        else:
            value = await _read(ctx, target, step)
    except PlaywrightError as exc:
        raise StepError(f"Could not read {step.selector!r}: {_first_line(exc)}") from None
    ctx.captured[step.save_as] = value
    return {step.save_as: value}


async def _matching(target: Locator, selector: str | list[str]) -> str:
    """The candidate selector that matched (for `all`, every element it matches is read)."""
    candidates = [selector] if isinstance(selector, str) else selector
    for candidate in candidates:
        if await target.page.locator(candidate).count() > 0:
            return candidate
    return candidates[0]


async def assert_(ctx: StepContext, step: Assert) -> dict[str, Any] | None:
    page = await ctx.page()
    if step.url is not None and not _url_matches(page.url, step.url):
        raise StepError(f"Expected the page at {step.url} but it is at {page.url}.")
    if step.selector is None and step.text is None:
        return None
    target = await locate(ctx, step.selector) if step.selector is not None else page.locator("body")
    if step.text is not None:
        try:
            await target.filter(has_text=step.text).first.wait_for(state="attached", timeout=ctx.timeout_ms)
        except PlaywrightError:
            actual = (await target.inner_text(timeout=1000)).strip()
            where = repr(step.selector) if step.selector else "the page"
            raise StepError(f"Expected {where} to contain {step.text!r} but it shows {actual[:200]!r}.") from None
    return None


def _url_matches(actual: str, expected: str) -> bool:
    if any(ch in expected for ch in "*?["):
        return fnmatch.fnmatchcase(actual, expected)
    return expected in actual


async def screenshot(ctx: StepContext, step: Screenshot) -> dict[str, Any] | None:
    page = await ctx.page()
    image = await page.screenshot(full_page=step.full_page, mask=ctx.masks, timeout=ctx.timeout_ms)
    name = step.name or step.id
    row = await ctx.save("screenshot", f"{name}.png", image, "image/png")
    return {"screenshot": row["name"]}


async def download(ctx: StepContext, step: Download) -> dict[str, Any] | None:
    target = await locate(ctx, step.selector, state="visible")
    try:
        async with target.page.expect_download(timeout=ctx.timeout_ms) as info:
            await target.click(timeout=ctx.timeout_ms)
        item = await info.value
    except PlaywrightError as exc:
        raise StepError(f"No download started after clicking {step.selector!r}: {_first_line(exc)}") from None
    suggested = Path(item.suggested_filename).name or "download"
    name = step.save_as if step.save_as and "." in step.save_as else suggested
    try:
        path = await _finished(item, ctx.store, name)
        # copied to the store a chunk at a time: never the whole file in memory
        row = await ctx.store.save_file(ctx.job_id, "download", name, path, ctx.step_id)
    except ArtifactTooLarge as exc:
        raise StepError(f"The download {exc.message}") from None
    finally:
        with contextlib.suppress(PlaywrightError):
            await item.delete()  # the browser's copy: the store has its own now
    ctx.artifacts.append(row)
    ref = {"artifact_id": row["id"], "name": row["name"], "size": row["size"], "url": None}
    if step.save_as:
        ctx.captured[step.save_as] = ref
    return {"download": ref}


async def _finished(item: BrowserDownload, store: ArtifactStore, name: str) -> Path:
    """The downloaded file once it is complete. Playwright has no size limit for downloads, so the
    file Chromium writes meanwhile is watched, and a download that grows past what the store takes is
    cancelled at once rather than filling the disk until the step times out."""
    done = asyncio.ensure_future(item.path())
    growing = _partial(item)
    try:
        while not done.done():
            await asyncio.wait({done}, timeout=GROWTH_POLL_S)
            if growing is not None and not done.done() and _size(growing) > store.max_bytes:
                with contextlib.suppress(PlaywrightError):
                    await item.cancel()
                raise store.too_large(name)
        path = done.result()
    except PlaywrightError as exc:
        raise StepError(f"The download of {name} failed: {_first_line(exc)}") from None
    finally:
        done.cancel()
    if path.stat().st_size > store.max_bytes:
        raise store.too_large(name)
    return path


def _partial(item: BrowserDownload) -> list[Path] | None:
    """Where Chromium writes the download while it runs (`GUID.crdownload`, renamed to `GUID` when it
    ends). Playwright keeps that path private (its artifact's `absolutePath`), so None should it move."""
    artifact = getattr(getattr(item, "_impl_obj", None), "_artifact", None)
    where = (getattr(artifact, "_initializer", None) or {}).get("absolutePath")
    return [Path(where), Path(f"{where}.crdownload")] if isinstance(where, str) else None


def _size(paths: list[Path]) -> int:
    sizes = [0]
    for path in paths:
        with contextlib.suppress(OSError):
            sizes.append(path.stat().st_size)
    return max(sizes)


ACTIONS: list[ActionFn] = [extract, assert_, screenshot, download]
