"""One Chromium per worker process, started on first need; one context per job, whose traffic all goes
through a filtering proxy of its own (worker/proxy.py).

Chromium keeps its sandbox unless the worker runs as root, and starts with a minimal environment: none of
the worker's secrets (ORCH_SECRET_KEY, database and Redis URLs, cloud credentials) reach the processes that
run page code. Playwright's node driver keeps the worker's environment (playwright-python copies
os.environ for it and has no option against that); it is the worker's own user and runs no page code.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import shutil
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Playwright, Route, async_playwright

from orchestrator.urlpolicy import UrlPolicy
from worker.proxy import Proxy, Refusal

log = logging.getLogger(__name__)

#: Chromium's flags. Playwright adds --no-sandbox unless it is launched with chromium_sandbox=True, which
#: BrowserPool does whenever the worker is not root. WebRTC may not bypass the proxy over UDP.
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
]
#: The variables Chromium gets from the worker's environment (and LC_*): what finding programs, fonts,
#: a display, the locale and the time zone takes, and the setuid sandbox's path where that one is used.
BROWSER_ENVIRONMENT = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "XAUTHORITY",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
    "XDG_CACHE_HOME",
    "XDG_DATA_HOME",
    "FONTCONFIG_PATH",
    "FONTCONFIG_FILE",
    "CHROME_DEVEL_SANDBOX",
)
#: Chromium sends requests to loopback addresses around a proxy unless told not to (Playwright adds this
#: too, unless PLAYWRIGHT_DISABLE_FORCED_CHROMIUM_PROXIED_LOOPBACK is set: saying it here makes it certain).
PROXY_BYPASS = "<-loopback>"
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


def browser_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment Chromium starts with: BROWSER_ENVIRONMENT and LC_* from `environ` (the worker's)."""
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if k in BROWSER_ENVIRONMENT or k.startswith("LC_")}


def sandboxed() -> bool:
    """Chromium's sandbox needs a user other than root (as root it refuses to start with it)."""
    return os.geteuid() != 0


class BrowserPool:
    def __init__(self, configured_path: str | None = None, policy: UrlPolicy | None = None) -> None:
        self._configured = configured_path
        self._policy = policy or UrlPolicy()
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._lock = asyncio.Lock()
        self._proxies: dict[BrowserContext, Proxy] = {}
        self.launches = 0

    async def _ensure(self) -> Browser:
        async with self._lock:
            if self._browser is None or not self._browser.is_connected():
                if self._playwright is None:
                    self._playwright = await async_playwright().start()
                path = find_chromium(self._configured, self._playwright.chromium.executable_path)
                log.info("starting Chromium %s", path or "(Playwright's own)")
                self._browser = await self._playwright.chromium.launch(
                    executable_path=path,
                    args=CHROMIUM_ARGS,
                    headless=True,
                    chromium_sandbox=sandboxed(),
                    env={**browser_environment()},  # typed as Playwright wants: str | float | bool values
                )
                self.launches += 1
            return self._browser

    async def new_context(self, storage_state: Any = None) -> BrowserContext:
        """A fresh context behind a proxy of its own; a resumed job gets the cookies and storage of its checkpoint."""
        browser = await self._ensure()
        proxy = Proxy(self._policy)
        server = await proxy.start()
        try:
            context = await browser.new_context(
                accept_downloads=True,
                viewport={"width": 1280, "height": 800},
                storage_state=storage_state,
                proxy={"server": server, "bypass": PROXY_BYPASS},
            )
            if origin := self._policy.own_https_origin:  # a tunnel hides the path: the browser checks it there
                await context.route(f"{origin}/**", functools.partial(self._own_pages, proxy))
        except BaseException:
            proxy.close()
            raise
        self._proxies[context] = proxy
        context.on("close", self._forget)
        return context

    def refusals(self, context: BrowserContext, since: datetime | None = None) -> list[Refusal]:
        """What the context's proxy refused (since `since`), oldest first."""
        proxy = self._proxies.get(context)
        return proxy.refusals(since) if proxy is not None else []

    def take_refusals(self, context: BrowserContext, since: datetime | None) -> list[Refusal]:
        """The context's refusals since `since` that no earlier call returned (Proxy.take)."""
        proxy = self._proxies.get(context)
        return proxy.take(since) if proxy is not None else []

    async def _own_pages(self, proxy: Proxy, route: Route) -> None:
        url = route.request.url
        if why := self._policy.refusal(url):
            proxy.refuse(url, why)
            await route.abort("blockedbyclient")
        else:
            await route.continue_()

    def _forget(self, context: BrowserContext) -> None:
        proxy = self._proxies.pop(context, None)
        if proxy is not None:
            proxy.close()

    async def close(self) -> None:
        for proxy in self._proxies.values():
            proxy.close()
        self._proxies.clear()
        if self._browser is not None:
            await self._browser.close()
            self._browser = None
        if self._playwright is not None:
            await self._playwright.stop()
            self._playwright = None
