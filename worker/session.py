"""The browser session of a run: one context and page, opened on first use or restored from the
job's checkpoint (the page's URL, cookies and storage, sealed like secret inputs), its screenshots,
the check of where the page went, and the files of the job a page may upload."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from playwright.async_api import BrowserContext, Page
from playwright.async_api import Error as PlaywrightError
from sqlalchemy import select

from orchestrator.db import tables as t
from orchestrator.db.engine import reading
from orchestrator.errors import ArtifactNotFound, StepError
from orchestrator.runbooks.schema import Runbook
from orchestrator.runbooks.steps import StepBase
from worker.context import StepContext
from worker.deps import Deps
from worker.masks import jsonable
from worker.steps import first_line
from worker.watcher import Watcher
from worker.writer import RunWriter

log = logging.getLogger(__name__)

#: Applies a step done earlier to this run's page again (a page-local one: fill, select, check, uncheck).
Again = Callable[[StepBase], Awaitable[None]]


class Session:
    def __init__(self, deps: Deps, job_id: str, attempt: int, watcher: Watcher, writer: RunWriter) -> None:
        self.deps = deps
        self.job_id = job_id
        self.attempt = attempt
        #: Locators screenshots hide (fields filled from secrets).
        self.masks: list[Any] = []
        #: Where the page is: its URL, cookies and storage, and the step it moved at (unsealed).
        self.checkpoint: dict[str, Any] | None = None
        self._watcher = watcher
        self._writer = writer
        self._context: BrowserContext | None = None
        self._page: Page | None = None

    @property
    def page(self) -> Page | None:
        return self._page

    async def open(self) -> Page:
        """The job's page, opened on first use (and again if it was closed)."""
        if self._page is None or self._page.is_closed():
            self._context = await self.deps.browsers.new_context()
            self._page = await self._context.new_page()
            await self._watcher.watch_page(self._page)
        return self._page

    def url(self) -> str | None:
        return self._page.url if self._page is not None and not self._page.is_closed() else None

    async def screenshot(self, ctx: StepContext, name: str) -> None:
        """A step's screenshot, saved as its artifact (a warning in its log when there is none)."""
        try:
            assert self._page is not None
            image = await self._page.screenshot(mask=self.masks, timeout=5000)
        except (PlaywrightError, AssertionError) as exc:
            ctx.log("warning", f"No screenshot after step {ctx.step_id}: {first_line(exc)}")
            return
        await ctx.save("screenshot", name, image, "image/png")

    async def snapshot(self) -> bytes | None:
        """The page as an image; None when there is no page or it cannot be taken."""
        if self._page is None or self._page.is_closed():
            return None
        try:
            return await self._page.screenshot(mask=self.masks, timeout=5000)
        except PlaywrightError:
            return None

    async def close(self) -> None:
        if self._context is not None:
            try:
                await self._context.close()
            except PlaywrightError as exc:
                log.warning("closing the browser context of job %s: %s", self.job_id, exc)
            self._context = self._page = None

    # -- resuming --------------------------------------------------------------------------------

    async def reopen(self, runbook: Runbook, resume_from: int, again: Again) -> int:
        """Restore the checkpoint's page now, or, when it was reached after the first step this run
        does (an approval a re-run asks again), return its position: it is opened once the run gets
        there, so nothing past the approval is opened before it is decided. -1: nothing deferred."""
        at = int((self.checkpoint or {}).get("position", -1))
        if resume_from <= 0 or not (self.checkpoint or {}).get("url"):
            return -1
        if at >= resume_from:
            return at
        await self.restore(runbook, resume_from, again)
        return -1

    async def restore(self, runbook: Runbook, resume_from: int, again: Again) -> None:
        """A resumed run: open the checkpoint's page with its cookies and storage, then re-apply the
        page-local steps (fill, select, check, uncheck) done there since it was reached."""
        checkpoint = self.checkpoint or {}
        if not checkpoint.get("url"):
            return
        await self.close()  # a page opened before (for an approval asked again) gives way
        self._context = await self.deps.browsers.new_context(storage_state=checkpoint.get("storage"))
        self._page = await self._context.new_page()
        await self._watcher.watch_page(self._page)
        messages = [f"Attempt {self.attempt} resumes at step {runbook.steps[resume_from - 1].id}'s page."]
        try:
            await self._page.goto(checkpoint["url"], timeout=runbook.settings.step_timeout * 1000)
            for step in runbook.steps[int(checkpoint.get("position", -1)) + 1 : resume_from]:
                await again(step)
        except (PlaywrightError, StepError) as exc:
            messages.append(jsonable(f"Restoring the page failed: {first_line(exc)}", self._writer.secrets))
        self._writer.write(events=[self._writer.log("info", message) for message in messages])

    async def replay(self, step: StepBase, again: Again) -> None:
        """A step a re-run carried over that comes after a step this run had to do first (an approval
        asked again): its page-local effect is applied again, so the page is as the re-run expects."""
        try:
            await again(step)
        except (PlaywrightError, StepError) as exc:
            message = jsonable(f"Applying step {step.id} again failed: {first_line(exc)}", self._writer.secrets)
            self._writer.write(events=[self._writer.log("warning", message)])

    async def new_checkpoint(self, position: int) -> dict[str, Any] | None:
        """Where the page is, when it moved: the URL, cookies and storage, and the step it moved at,
        sealed for the job's row. Captured values live on the step rows. None when nothing changed."""
        url = self.url()
        if url is None or self._context is None or url == (self.checkpoint or {}).get("url"):
            return None
        try:
            storage = await self._context.storage_state()
        except PlaywrightError:
            storage = None
        self.checkpoint = {**(self.checkpoint or {}), "url": url, "storage": storage, "position": position}
        return self.seal(self.checkpoint)

    def seal(self, checkpoint: dict[str, Any]) -> dict[str, Any]:
        """The page's URL and cookies can hold secrets (a token in a query, a session cookie): they are
        stored encrypted, like secret inputs. The position and loss count stay readable."""
        private: dict[str, Any] = {k: checkpoint[k] for k in ("url", "storage") if k in checkpoint}
        public = {k: v for k, v in checkpoint.items() if k not in private}
        return {**public, "sealed": self.deps.svc.box.seal(private)}

    def unseal(self, stored: dict[str, Any] | None) -> dict[str, Any] | None:
        if not stored:
            return stored
        opened = {k: v for k, v in stored.items() if k != "sealed"}
        return {**opened, **self.deps.svc.box.open(stored.get("sealed"))}

    # -- what the page may do --------------------------------------------------------------------

    async def check_where_the_page_went(self, since: Any) -> None:
        """The job's browser sends every request through its filtering proxy (worker/proxy.py), which refuses
        what the URL policy refuses, redirects, frames, popups and downloads included; a step during which it
        refused one (and a goto it refused) fails here, naming the first, once. The page's own URL is checked
        too: inside a tunnel to the app's own https origin the proxy cannot see paths, and Playwright's routes
        do not see redirects (microsoft/playwright#3993); a page on a refused URL is taken off it before the
        step's screenshot."""
        if self._context is None:
            return
        url = self.url()
        shown = {r.url for r in self.deps.browsers.refusals(self._context)}  # these show the proxy's refusal
        if url and url.startswith(("http:", "https:")) and url not in shown and (why := self.deps.policy.refusal(url)):
            assert self._page is not None
            await self._page.goto("about:blank")
            raise StepError(f"The page went to {url}, which is refused: {why}.")
        if refused := self.deps.browsers.take_refusals(self._context, since=since):
            raise StepError(f"The page tried to open {refused[0].url}, which is refused: {refused[0].reason}.")

    async def load_artifact(self, artifact_id: str) -> tuple[dict[str, Any], bytes]:
        """A file of this job (an upload step sets a file input from it)."""
        await self._writer.flush()  # an artifact saved by an earlier step may still be on its way
        query = select(t.artifacts).where(t.artifacts.c.id == artifact_id, t.artifacts.c.job_id == self.job_id)
        async with reading(self.deps.svc.engine) as conn:
            row = (await conn.execute(query)).mappings().first()
        if row is None:
            raise StepError(f"This job has no file with the id {artifact_id}.")
        try:
            return dict(row), await self.deps.svc.store.read(row["path"])
        except ArtifactNotFound as exc:
            raise StepError(exc.message) from None
