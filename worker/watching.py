"""What lets people see a job: the live screencast, the session video, and the diagnostics of a
failed step (mixed into the Executor; see worker/executor.py and worker/screencast.py)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from playwright.async_api import ConsoleMessage, Page
from playwright.async_api import Error as PlaywrightError

from orchestrator.events import Pending
from orchestrator.views import artifact_view, iso
from worker.committer import Statement
from worker.context import StepContext
from worker.rows import INSERT_ARTIFACT, jsonable
from worker.screencast import Screencast, encode

if TYPE_CHECKING:
    from worker.deps import Deps

log = logging.getLogger(__name__)

CONSOLE_KEPT = 10


class WatchingMixin:
    deps: Deps
    job_id: str
    attempt: int
    _page: Page | None

    def _write(
        self, *ops: Any, statements: list[Statement] | None = None, events: list[Pending] | None = None
    ) -> asyncio.Future[Any]:
        raise NotImplementedError

    def _init_watching(self) -> None:
        self._cast: Screencast | None = None
        self._video_dir: Path | None = None
        self._video_started: float | None = None  # wall-clock time the recording starts from
        self._console: deque[str] = deque(maxlen=CONSOLE_KEPT)
        self._earlier_frames: list[tuple[float, Path]] = []
        self._casts = 0

    def _record_video(self, wanted: bool) -> None:
        if wanted:
            self._video_dir = self.deps.svc.settings.data_dir / "frames" / f"{self.job_id}-{self.attempt}"
            self._video_started = time.time()

    @property
    def video_started_at(self) -> str | None:
        if self._video_started is None:
            return None
        return iso(datetime.fromtimestamp(self._video_started, UTC))

    async def _watch_page(self, page: Page) -> None:
        """A new page of this job: keep its console errors, and screencast it for watchers (and the video)."""
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self._console.append(str(error)))
        self._earlier_frames += await self._stop_cast()  # the page before this one (it was closed)
        self._casts += 1
        self._cast = Screencast(page, self.deps.svc.redis, self.job_id, self._video_dir, prefix=f"{self._casts}-")
        try:
            await self._cast.start()
        except PlaywrightError as exc:
            log.warning("job %s: no screencast (%s)", self.job_id, exc)
            self._cast = None

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self._console.append(message.text)

    def _casting_step(self, step_id: str | None) -> None:
        if self._cast is not None:
            self._cast.step_id = step_id

    async def _stop_watching(self) -> list[tuple[float, Path]]:
        """Stop the screencast (before its page closes); returns the video's frames."""
        return self._earlier_frames + await self._stop_cast()

    async def _stop_cast(self) -> list[tuple[float, Path]]:
        cast, self._cast = self._cast, None
        if cast is None:
            return []
        await cast.stop()
        return cast.frames

    async def _save_video(self, frames: list[tuple[float, Path]]) -> None:
        """Encode the session video and store it as the job's `video` artifact (no frames: only
        clear the frames away)."""
        directory, started = self._video_dir, self._video_started
        if directory is None or started is None:
            return
        try:
            if frames:
                out = directory / "session.webm"
                await asyncio.to_thread(encode, frames, started, time.time(), out)
                stored = self.deps.svc.store.save(
                    self.job_id, "video", "session.webm", out.read_bytes(), mime_type="video/webm"
                )
                event = Pending(self.job_id, "artifact", {"job_id": self.job_id, "artifact": artifact_view(stored.row)})
                self._write(statements=[(INSERT_ARTIFACT, stored.row)], events=[event])
        except Exception as exc:  # noqa: BLE001 - a job keeps its result even when its video fails
            log.error("job %s: the session video could not be made: %s", self.job_id, exc)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    async def _diagnose(self, typed: Any, ctx: StepContext, secrets: frozenset[str]) -> dict[str, Any] | None:
        """What a person needs to see why a browser step failed."""
        page = self._page
        if page is None or page.is_closed():
            return None
        selector = getattr(typed, "selector", None)
        try:
            title = await asyncio.wait_for(page.title(), 2)
        except (PlaywrightError, TimeoutError):
            title = None
        shots = [a for a in ctx.artifacts if a["kind"] == "screenshot"]
        found = {
            "selectors": selector if isinstance(selector, list) else [selector] if selector else [],
            "url": page.url,
            "title": title,
            "console_errors": list(self._console),
            "screenshot_id": shots[-1]["id"] if shots else None,
        }
        return jsonable(found, secrets)
