"""Server-sent events: a snapshot or an exact replay after Last-Event-ID, then live rows as they commit."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response

from orchestrator import events
from orchestrator.db.engine import reading
from orchestrator.errors import NotFound
from orchestrator.services import Services
from orchestrator.views import iso, job_view
from web.feed import BATCH, encode

HEARTBEAT_S = 15
PING = b": ping\r\n\r\n"
WATCH_TTL_MS = 3000


def _last_event_id(request: Request) -> int | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    if raw is None or raw == "":
        return None
    return int(raw) if raw.isdigit() else 0


def _frame_event(frame: dict[str, Any]) -> ServerSentEvent:
    """A live frame: an SSE `screenshot` with the frame's URL and no id (frames are not kept, so
    they are not replayed either)."""
    job_id = frame["job_id"]
    data = {
        "job_id": job_id,
        "step_id": frame.get("step_id"),
        "url": f"/api/v1/jobs/{job_id}/frame?seq={int(frame['seq'])}",
        "at": iso(datetime.fromtimestamp(float(frame["at"]), UTC)),
        "live": True,
    }
    return ServerSentEvent(data=json.dumps(data), event="screenshot")


async def _follow(
    request: Request, job_id: str | None, after: int, types: tuple[str, ...] | None, frames: bool = False
) -> AsyncIterator[ServerSentEvent]:
    svc: Services = request.app.state.svc
    with request.app.state.hub.subscribe(job_id, frames=frames) as subscription:
        more = True
        while True:
            if subscription.take_news() or more:
                if job_id is None:
                    rows = await request.app.state.feed.after(after)
                else:
                    async with reading(svc.engine) as conn:
                        found = await events.read_after(conn, after, job_id=job_id, types=types)
                    rows = [(r.id, encode(r)) for r in found]
                for row_id, payload in rows:
                    yield payload
                    after = row_id
                more = len(rows) >= BATCH
            if frame := subscription.take_frame():
                yield _frame_event(frame)
            if not (more or subscription.news or subscription.frame) and not await subscription.wait(HEARTBEAT_S):
                yield PING  # keeps proxies from closing an idle stream, and finds clients that left


async def _keep_watching(svc: Services, job_id: str) -> None:
    """While a page follows this job, its worker streams live frames (worker/screencast.py)."""
    while True:
        with contextlib.suppress(RedisError, OSError):
            await svc.redis.set(events.watch_key(job_id), 1, px=WATCH_TTL_MS)
        await asyncio.sleep(WATCH_TTL_MS / 3000)


async def job_stream(request: Request) -> EventSourceResponse:
    job_id = request.path_params["job_id"]
    svc: Services = request.app.state.svc
    after = _last_event_id(request)
    async with reading(svc.engine) as conn:
        snapshot: dict[str, Any] | None = None
        if after is None:
            after = await events.last_id(conn, job_id)  # read before the view: later news is replayed, not lost
            snapshot = await job_view(conn, job_id)
        else:
            await job_view(conn, job_id)  # 404 for an unknown job

    async def stream() -> AsyncIterator[ServerSentEvent]:
        watching = asyncio.create_task(_keep_watching(svc, job_id))
        try:
            if snapshot is not None:
                yield ServerSentEvent(data=json.dumps(snapshot), event="snapshot", id=str(after))
            async for item in _follow(request, job_id, after, None, frames=True):
                yield item
        finally:
            watching.cancel()

    return EventSourceResponse(stream(), ping=0, headers={"Cache-Control": "no-store"})


async def frame(request: Request) -> Response:
    """GET /api/v1/jobs/{id}/frame: the job's latest live frame (JPEG), while somebody watches it."""
    job_id = request.path_params["job_id"]
    svc: Services = request.app.state.svc
    image = await svc.redis.get(events.frame_key(job_id))
    if image is None:
        async with reading(svc.engine) as conn:
            await job_view(conn, job_id)  # 404 for an unknown job
        raise NotFound(f"Job {job_id} has no live frame now: its page is not open, or nobody has watched it lately.")
    return Response(image, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


async def all_stream(request: Request) -> EventSourceResponse:
    svc: Services = request.app.state.svc
    after = _last_event_id(request)
    if after is None:
        async with reading(svc.engine) as conn:
            after = await events.last_id(conn)
    return EventSourceResponse(
        _follow(request, None, after, events.GLOBAL_TYPES), ping=0, headers={"Cache-Control": "no-store"}
    )
