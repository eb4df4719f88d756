"""The live view and the session video of one job, from Chromium's screencast (CDP
`Page.startScreencast`, JPEG frames sent when the page changes).

- Live: while somebody watches the job (the web app keeps `orch:watch:{job}` alive while a page
  follows it), the latest frame goes to Redis (`orch:frame:{job}`, short-lived) and a note of it
  to the `orch:frames` channel; the web app turns that into an SSE `screenshot` event with the frame's
  URL. Nobody watching: no frames at all (unless the job records a video).
- Video: when the job records one, every frame is kept on disk with its time, and `encode` turns
  them into a WebM file when the job ends. A `VideoBudget` caps the frames, their bytes and the
  seconds recorded (ORCH_VIDEO_MAX_FRAMES, _BYTES, _SECONDS): past a cap no frame is kept, and the
  video ends there.
Fields filled from secret inputs are hidden in the page itself before they are typed into (see
`forms.fill`), so frames never show them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.async_api import CDPSession, Page
from playwright.async_api import Error as PlaywrightError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from orchestrator.keys import FRAMES_CHANNEL, frame_key, watch_key

log = logging.getLogger(__name__)

FRAME_TTL_MS = 60_000
WATCH_POLL_S = 0.25
#: Frames are at most this wide (the page is 1280 wide): enough to read, small enough to stream.
MAX_WIDTH = 1280
QUALITY = 60


@dataclass
class VideoBudget:
    """What one job's session video may keep, across all its pages: frames are kept until one cap is
    reached, and the video ends there (`ended_at`, with the cap in `reason`)."""

    started: float  # wall-clock time the recording starts from
    max_frames: int
    max_bytes: int
    max_seconds: float
    frames: int = 0
    size: int = 0
    ended_at: float | None = None
    reason: str | None = None

    @property
    def recording(self) -> bool:
        return self.ended_at is None

    def take(self, size: int, at: float) -> bool:
        """Whether a frame of `size` bytes, shot at `at`, is kept; the first one past a cap ends the video."""
        if self.ended_at is not None:
            return False
        reason = self._reached(size, at)
        if reason is not None:
            self.ended_at, self.reason = max(at, self.started), reason
            return False
        self.frames += 1
        self.size += size
        return True

    def _reached(self, size: int, at: float) -> str | None:
        if self.frames >= self.max_frames:
            return f"{self.max_frames} frames (ORCH_VIDEO_MAX_FRAMES)"
        if self.size + size > self.max_bytes:
            return f"{self.max_bytes} bytes of frames (ORCH_VIDEO_MAX_BYTES)"
        if at - self.started > self.max_seconds:
            return f"{self.max_seconds:g} s (ORCH_VIDEO_MAX_SECONDS)"
        return None

    def stopped_by(self, now: float) -> str | None:
        """The cap that ended the video before `now`, if one did."""
        if self.reason is None and now - self.started > self.max_seconds:
            return f"{self.max_seconds:g} s (ORCH_VIDEO_MAX_SECONDS)"
        return self.reason

    def end(self, now: float) -> float:
        """When the video ends: where a cap stopped it, else now; never past the seconds it may last."""
        return min(self.ended_at or now, self.started + self.max_seconds)


class Screencast:
    def __init__(
        self,
        page: Page,
        redis: Redis,
        job_id: str,
        video_dir: Path | None = None,
        prefix: str = "",
        budget: VideoBudget | None = None,
    ) -> None:
        self._page, self._redis, self.job_id = page, redis, job_id
        self._video_dir, self._prefix = video_dir, prefix
        self._budget = budget
        self._session: CDPSession | None = None
        self._casting = False
        self._watched = False
        self._seq = 0
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[Any]] = set()
        self.frames: list[tuple[float, Path]] = []  # (wall-clock time, file) of the video's frames
        self.step_id: str | None = None

    async def start(self) -> None:
        self._session = await self._page.context.new_cdp_session(self._page)
        self._session.on("Page.screencastFrame", self._on_frame)
        if self._video_dir is not None:
            self._video_dir.mkdir(parents=True, exist_ok=True)
            await self._cast(self._recording)
        self._task = asyncio.create_task(self._follow_watchers(), name=f"screencast-{self.job_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._cast(False)
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self._session is not None:
            with contextlib.suppress(PlaywrightError):
                await self._session.detach()
            self._session = None

    async def _follow_watchers(self) -> None:
        while True:
            try:
                self._watched = bool(await self._redis.exists(watch_key(self.job_id)))
            except (RedisError, OSError):
                self._watched = False
            await self._cast(self._watched or self._recording)
            await asyncio.sleep(WATCH_POLL_S)

    @property
    def _recording(self) -> bool:
        """Frames are still wanted for the video (it records, and no cap has ended it)."""
        return self._video_dir is not None and (self._budget is None or self._budget.recording)

    async def _cast(self, on: bool) -> None:
        if on == self._casting or self._session is None:
            return
        self._casting = on
        with contextlib.suppress(PlaywrightError):
            if on:
                params = {"format": "jpeg", "quality": QUALITY, "maxWidth": MAX_WIDTH, "everyNthFrame": 1}
                await self._session.send("Page.startScreencast", params)
            else:
                await self._session.send("Page.stopScreencast")

    def _on_frame(self, params: dict[str, Any]) -> None:
        session = self._session
        if session is None:
            return
        self._spawn(session.send("Page.screencastFrameAck", {"sessionId": params["sessionId"]}))
        image = base64.b64decode(params["data"])
        at = float(params.get("metadata", {}).get("timestamp") or time.time())
        self._seq += 1
        if self._video_dir is not None and (self._budget is None or self._budget.take(len(image), at)):
            path = self._video_dir / f"{self._prefix}{self._seq:06d}.jpg"
            path.write_bytes(image)
            self.frames.append((at, path))
        if self._watched:
            self._spawn(self._publish(image, self._seq, at))

    async def _publish(self, image: bytes, seq: int, at: float) -> None:
        note = {"job_id": self.job_id, "seq": seq, "at": at, "step_id": self.step_id}
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(frame_key(self.job_id), image, px=FRAME_TTL_MS)
                pipe.publish(FRAMES_CHANNEL, json.dumps(note))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.debug("job %s: a live frame was not sent (%s)", self.job_id, exc)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._pending.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("job %s: screencast call failed: %s", self.job_id, task.exception())


def ffmpeg() -> str:
    """The encoder: the ffmpeg the imageio-ffmpeg wheel ships, else the system's."""
    with contextlib.suppress(ImportError, RuntimeError):
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    found = shutil.which("ffmpeg")
    if found is None:
        raise RuntimeError("No ffmpeg: install the Python package imageio-ffmpeg or the system package ffmpeg.")
    return found


def encode(frames: list[tuple[float, Path]], started: float, ended: float, out: Path) -> None:
    """A WebM (VP8) of the frames, each shown until the next; the first from `started` on and the
    last until `ended`, so the video lasts as long as the job ran."""
    listing = out.with_suffix(".txt")
    lines = []
    for i, (at, path) in enumerate(frames):
        begin = started if i == 0 else at
        end = frames[i + 1][0] if i + 1 < len(frames) else ended
        lines += [f"file '{path.name}'", f"duration {max(end - begin, 0.001):.3f}"]
    lines.append(f"file '{frames[-1][1].name}'")  # the concat demuxer ignores the last duration otherwise
    listing.write_text("\n".join(lines) + "\n")
    command = [
        ffmpeg(), "-hide_banner", "-loglevel", "error", "-y",
        "-f", "concat", "-safe", "0", "-i", str(listing),
        "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", "-fps_mode", "vfr",
        "-c:v", "libvpx", "-b:v", "1M", "-deadline", "realtime", "-cpu-used", "8", "-pix_fmt", "yuv420p",
        str(out),
    ]  # fmt: skip
    subprocess.run(command, cwd=listing.parent, check=True, capture_output=True, timeout=600)
