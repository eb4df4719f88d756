"""One Chromium per worker process, started on first need; one context per job."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Playwright, Route, async_playwright

from orchestrator.urlpolicy import UrlPolicy

log = logging.getLogger(__name__)

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
SYSTEM_CHROMIUMS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium(configured: str | None, playwright_path: str | None = None) -> str | None:
    """ORCH_BROWSER_PATH, else Playwright's own Chromium when downloaded, else the system's."""
    if configured:
        return configured
    if playwright_path and Path(playwright_path).exists():
        return None  # Playwright finds its own
    for name in SYSTEM_CHROMIUMS:
        if found := shutil.which(name):
            return found
    raise RuntimeError(
        "No Chromium found: set ORCH_BROWSER_PATH, run `playwright install chromium`, "
        "or install the system package `chromium`."
    )


class BrowserPool:
    def __init__(self, configured_path: str | None = None, policy: UrlPolicy | None = None) -> None:
        self._configured = configured_path
        self._policy = policy or UrlPolicy()
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._lock = asyncio.Lock()
        self.launches = 0

    async def _ensure(self) -> Browser:
        async with self._lock:
            if self._browser is None or not self._browser.is_connected():
                if self._playwright is None:
                    self._playwright = await async_playwright().start()
                path = find_chromium(self._configured, self._playwright.chromium.executable_path)
                log.info("starting Chromium %s", path or "(Playwright's own)")
                self._browser = await self._playwright.chromium.launch(
                    executable_path=path, args=CHROMIUM_ARGS, headless=True
                )
                self.launches += 1
            return self._browser

    async def new_context(self, storage_state: Any = None) -> BrowserContext:
        """A fresh context; a resumed job gets the cookies and storage of its checkpoint."""
        browser = await self._ensure()
        context = await browser.new_context(
            accept_downloads=True, viewport={"width": 1280, "height": 800}, storage_state=storage_state
        )
        if self._policy.restricts_hosts:  # redirects, frames and subresources too, not only goto
            await context.route("**/*", self._enforce)
        return context

    async def _enforce(self, route: Route) -> None:
        url = route.request.url
        if url.startswith(("http:", "https:")) and self._policy.refusal(url):
            await route.abort("blockedbyclient")
        else:
            await route.continue_()

    async def close(self) -> None:
        if self._browser is not None:
            await self._browser.close()
            self._browser = None
        if self._playwright is not None:
            await self._playwright.stop()
            self._playwright = None
