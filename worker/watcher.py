"""The watcher of a run: what lets people see a job. The live screencast, the session video, the
page's console errors, and the diagnostics of a failed step (see worker/screencast.py)."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from playwright.async_api import ConsoleMessage, Page
from playwright.async_api import Error as PlaywrightError
from sqlalchemy import select

from orchestrator.db import tables as t
from orchestrator.db.engine import reading
from orchestrator.events import Pending
from orchestrator.services import Services
from orchestrator.states import JobStatus
from orchestrator.views import artifact_view, iso
from worker.context import StepContext
from worker.deps import Deps
from worker.masks import jsonable
from worker.screencast import Screencast, VideoBudget, encode
from worker.statements import INSERT_ARTIFACT
from worker.writer import RunWriter

log = logging.getLogger(__name__)

CONSOLE_KEPT = 10


class Watcher:
    def __init__(self, deps: Deps, job_id: str, attempt: int, writer: RunWriter) -> None:
        self.deps = deps
        self.job_id = job_id
        self.attempt = attempt
        self._writer = writer
        self._cast: Screencast | None = None
        self._video_dir: Path | None = None
        self._video_started: float | None = None  # wall-clock time the recording starts from
        self._budget: VideoBudget | None = None
        self._console: deque[str] = deque(maxlen=CONSOLE_KEPT)
        self._earlier_frames: list[tuple[float, Path]] = []
        self._casts = 0

    def record_video(self, wanted: bool) -> None:
        if wanted:
            settings = self.deps.svc.settings
            self._video_dir = frames_root(settings.data_dir) / f"{self.job_id}-{self.attempt}"
            self._video_started = time.time()
            self._budget = VideoBudget(
                self._video_started, settings.video_max_frames, settings.video_max_bytes, settings.video_max_seconds
            )

    @property
    def video_started_at(self) -> str | None:
        if self._video_started is None:
            return None
        return iso(datetime.fromtimestamp(self._video_started, UTC))

    async def watch_page(self, page: Page) -> None:
        """A new page of this job: keep its console errors, and screencast it for watchers (and the video)."""
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self._console.append(str(error)))
        self._earlier_frames += await self._stop_cast()  # the page before this one (it was closed)
        self._casts += 1
        self._cast = Screencast(
            page, self.deps.svc.redis, self.job_id, self._video_dir, prefix=f"{self._casts}-", budget=self._budget
        )
        try:
            await self._cast.start()
        except PlaywrightError as exc:
            log.warning("job %s: no screencast (%s)", self.job_id, exc)
            self._cast = None

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self._console.append(message.text)

    def casting_step(self, step_id: str | None) -> None:
        if self._cast is not None:
            self._cast.step_id = step_id

    async def stop(self) -> list[tuple[float, Path]]:
        """Stop the screencast (before its page closes); returns the video's frames."""
        return self._earlier_frames + await self._stop_cast()

    async def _stop_cast(self) -> list[tuple[float, Path]]:
        cast, self._cast = self._cast, None
        if cast is None:
            return []
        await cast.stop()
        return cast.frames

    async def save_video(self, frames: list[tuple[float, Path]]) -> None:
        """Encode the session video and store it as the job's `video` artifact (no frames: only
        clear the frames away)."""
        directory, started, budget = self._video_dir, self._video_started, self._budget
        if directory is None or started is None:
            return
        try:
            if frames:
                now = time.time()
                ended = budget.end(now) if budget is not None else now
                out = directory / "session.webm"
                await asyncio.to_thread(encode, frames, started, ended, out)
                store = self.deps.svc.store  # copied in chunks: never the whole video in memory
                row = await store.save_file(self.job_id, "video", "session.webm", out, mime_type="video/webm")
                events = [Pending(self.job_id, "artifact", {"job_id": self.job_id, "artifact": artifact_view(row)})]
                if budget is not None and (cap := budget.stopped_by(now)):
                    message = (
                        f"The session video stopped after {budget.frames} frames, at {ended - started:.1f} s: "
                        f"it reached its cap of {cap}."
                    )
                    events.append(self._writer.log("warning", message))
                self._writer.write(statements=[(INSERT_ARTIFACT, row)], events=events)
        except Exception as exc:  # noqa: BLE001 - a job keeps its result even when its video fails
            log.error("job %s: the session video could not be made: %s", self.job_id, exc)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    async def diagnose(
        self, page: Page | None, typed: Any, ctx: StepContext, secrets: frozenset[str]
    ) -> dict[str, Any] | None:
        """What a person needs to see why a browser step failed."""
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


def frames_root(data_dir: Path) -> Path:
    """Where recording jobs keep their video's frames: a folder `{job}-{attempt}` each."""
    return data_dir / "frames"


async def sweep_frames(svc: Services) -> list[str]:
    """Remove the frame folders no live run owns (left behind by a worker that died, or a video that
    failed): those of jobs that are gone or finished, and of attempts other than a job's current one.
    Any number of workers may share the data folder: a running attempt's folder is kept. Returns the
    names removed."""
    root = frames_root(svc.settings.data_dir)
    folders: dict[str, list[tuple[int, Path]]] = {}
    for entry in root.iterdir() if root.is_dir() else ():
        job_id, _, attempt = entry.name.rpartition("-")
        if entry.is_dir() and job_id and attempt.isdigit():
            folders.setdefault(job_id, []).append((int(attempt), entry))
    if not folders:
        return []
    async with reading(svc.engine) as conn:
        rows = await conn.execute(
            select(t.jobs.c.id, t.jobs.c.status, t.jobs.c.attempt).where(t.jobs.c.id.in_(list(folders)))
        )
        live = {r.id: r.attempt for r in rows if not JobStatus(r.status).finished}
    removed = []
    for job_id, found in folders.items():
        for number, folder in found:
            if live.get(job_id) != number:
                await asyncio.to_thread(shutil.rmtree, folder, True)
                removed.append(folder.name)
    if removed:
        log.info("removed %d frame folders left behind: %s", len(removed), ", ".join(sorted(removed)))
    return removed
