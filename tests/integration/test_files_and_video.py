"""Nothing runs away (issue 16): a download larger than ORCH_MAX_ARTIFACT_BYTES fails its step (an
endless one is stopped while it grows), a session video stops at its frame, byte or duration cap,
and frame folders that a dead worker left behind are removed when a worker starts."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from orchestrator import ingest, jobs
from orchestrator.config import Settings
from orchestrator.db.engine import reading
from orchestrator.events import read_after
from tests.integration.conftest import Env, open_env, step
from tests.support import SITE_DIR

DOWNLOAD = """
name: fetch-report
settings: {step_timeout: 20}
steps:
  - {id: open, action: goto, url: "URL"}
  - {id: report, action: download, selector: "#report", save_as: report}
"""
RECORDED = """
name: recorded
settings: {video: true}
steps:
  - {id: open, action: goto, url: "{{ site.url }}/ticker.html"}
  - {id: wait, action: sleep, seconds: SECONDS}
"""


@contextlib.asynccontextmanager
async def env_with(settings: Settings, site_url: str, **changes: Any) -> AsyncIterator[Env]:
    async with open_env(replace(settings, **changes), site_url) as env:
        yield env


class Stalling(BaseHTTPRequestHandler):
    """A page whose link downloads a file that sends 6 MB, then nothing more for a minute (the
    download does not end before the step's timeout)."""

    done = threading.Event()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        return

    def do_GET(self) -> None:
        if self.path == "/":
            body = b'<!doctype html><a id="report" href="/stalling.bin">Download</a>'
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Disposition", 'attachment; filename="stalling.bin"')
        self.end_headers()
        with contextlib.suppress(OSError):
            for _ in range(96):
                self.wfile.write(b"\0" * 65536)
            self.wfile.flush()
            self.done.wait(60)


@contextlib.contextmanager
def stalling_site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stalling)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        Stalling.done.set()
        server.shutdown()
        server.server_close()


async def test_a_download_over_the_artifact_cap_fails_its_step_and_stores_nothing(
    settings: Settings, site_url: str
) -> None:
    size = (SITE_DIR / "files" / "report.csv").stat().st_size
    async with env_with(settings, site_url, max_artifact_bytes=size - 1) as env:
        job = await env.run(DOWNLOAD.replace("URL", "{{ site.url }}/data.html"))
    assert job["status"] == "failed"
    error = step(job, "report")["error"]
    assert "report.csv" in error and f"{size - 1} bytes" in error and "ORCH_MAX_ARTIFACT_BYTES" in error, error
    assert [a for a in job["artifacts"] if a["kind"] == "download"] == []


async def test_a_download_is_stopped_as_it_grows_past_the_cap_not_at_the_step_timeout(
    settings: Settings, site_url: str
) -> None:
    with stalling_site() as url:
        async with env_with(settings, site_url, max_artifact_bytes=5_000_000) as env:
            job = await env.run(DOWNLOAD.replace("URL", url))
    assert job["status"] == "failed"
    error = step(job, "report")["error"]
    assert "stalling.bin" in error and "5000000 bytes" in error and "ORCH_MAX_ARTIFACT_BYTES" in error, error
    assert [a for a in job["artifacts"] if a["kind"] == "download"] == []


async def test_a_download_under_the_cap_is_stored_whole(settings: Settings, site_url: str) -> None:
    served = (SITE_DIR / "files" / "report.csv").read_bytes()
    async with env_with(settings, site_url, max_artifact_bytes=len(served)) as env:
        job = await env.run(DOWNLOAD.replace("URL", "{{ site.url }}/data.html"))
        assert job["status"] == "completed", job["error"]
        [saved] = [a for a in job["artifacts"] if a["kind"] == "download"]
        assert saved["size"] == len(served)
        assert env.artifact_path(job["id"], saved["id"]).read_bytes() == served


@pytest.mark.parametrize(
    ("cap", "value", "named", "seconds"),
    [
        ("video_max_frames", 5, "5 frames (ORCH_VIDEO_MAX_FRAMES)", 3),
        ("video_max_bytes", 200_000, "200000 bytes of frames (ORCH_VIDEO_MAX_BYTES)", 3),
        # counted from the job's start, so with room for the browser to start first
        ("video_max_seconds", 5, "5 s (ORCH_VIDEO_MAX_SECONDS)", 8),
    ],
)
async def test_a_session_video_stops_at_its_cap_and_the_job_says_so(
    settings: Settings, site_url: str, cap: str, value: int, named: str, seconds: int
) -> None:
    async with env_with(settings, site_url, **{cap: value}) as env:
        job = await env.run(RECORDED.replace("SECONDS", str(seconds)))
        async with reading(env.svc.engine) as conn:
            logs = [e.data["message"] for e in await read_after(conn, 0, job_id=job["id"]) if e.type == "log"]
    assert job["status"] == "completed", job["error"]
    [video] = [a for a in job["artifacts"] if a["kind"] == "video"]
    assert video["size"] > 0
    assert any("session video" in m and named in m for m in logs), logs
    assert not (settings.data_dir / "frames" / f"{job['id']}-1").exists()


async def test_a_starting_worker_removes_frame_folders_no_live_run_owns(env: Env) -> None:
    running, _ = await ingest.report(
        env.svc, {"process": "bot", "source": "rpa", "external_id": "a", "status": "running"}, "tests"
    )
    finished, _ = await ingest.report(
        env.svc, {"process": "bot", "source": "rpa", "external_id": "b", "status": "completed"}, "tests"
    )
    frames = env.settings.data_dir / "frames"
    names = [f"{running['id']}-1", f"{running['id']}-0", f"{finished['id']}-1", "0123456789abcdef-2", "notes"]
    for name in names:
        (frames / name).mkdir(parents=True)
        (frames / name / "1-000001.jpg").write_bytes(b"\xff\xd8")
    await env.work()
    assert sorted(p.name for p in frames.iterdir()) == sorted([f"{running['id']}-1", "notes"])
    assert (await jobs.get(env.svc, running["id"]))["status"] == "running"
