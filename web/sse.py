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
from starlette.types import Message, Send

from orchestrator import events
from orchestrator.db.engine import reading
from orchestrator.errors import NotFound
from orchestrator.services import Services
from orchestrator.views import iso, job_view
from web.feed import BATCH, Feed, encode

HEARTBEAT_S = 15
PING = b": ping\r\n\r\n"
WATCH_TTL_MS = 3000


class EventStream(EventSourceResponse):
    """sse-starlette's response, minus its per-send cancel scope when no send timeout is set.

    `_send_with_timeout` wraps every send in `anyio.move_on_after(None)`, which looks up the async
    library and builds a cancel scope each time: a tenth of the web process's CPU with a thousand
    streams (measured with py-spy, bench/watching.py). Our streams set no send timeout: a client
    that stops reading blocks only its own stream, which holds no queue. Should the private method
    be renamed upstream, this override stops applying and the streams only get slower."""

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        if self.send_timeout is None:
            await send(message)
        else:
            await super()._send_with_timeout(send, message)


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
) -> AsyncIterator[ServerSentEvent | bytes]:
    svc: Services = request.app.state.svc
    feed: Feed = request.app.state.feed
    subscribing = feed.subscribe() if job_id is None else request.app.state.hub.subscribe(job_id, frames=frames)
    with subscribing as subscription:
        more = True
        while True:
            if subscription.take_news() or more:
                if job_id is None:
                    rows = await feed.after(after)
                else:
                    async with reading(svc.engine) as conn:
                        found = await events.read_after(conn, after, job_id=job_id, types=types)
                    rows = [(r.id, encode(r)) for r in found]
                if rows:
                    after = rows[-1][0]
                    yield rows[0][1] if len(rows) == 1 else b"".join(payload for _, payload in rows)
                more = len(rows) >= BATCH
            if frame := subscription.take_frame():
                yield _frame_event(frame)
            if subscription.take_beat():
                yield PING  # keeps proxies from closing an idle stream, and finds clients that left
            if not (more or subscription.news or subscription.frame or subscription.beat):
                await subscription.wait()


async def _keep_watching(svc: Services, job_id: str) -> None:
    """While a page follows this job, its worker streams live frames (worker/screencast.py)."""
    while True:
        with contextlib.suppress(RedisError, OSError):
            await svc.redis.set(events.watch_key(job_id), 1, px=WATCH_TTL_MS)
        await asyncio.sleep(WATCH_TTL_MS / 3000)


async def job_stream(request: Request) -> EventStream:
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

    async def stream() -> AsyncIterator[ServerSentEvent | bytes]:
        watching = asyncio.create_task(_keep_watching(svc, job_id))
        try:
            if snapshot is not None:
                yield ServerSentEvent(data=json.dumps(snapshot), event="snapshot", id=str(after))
            async for item in _follow(request, job_id, after, None, frames=True):
                yield item
        finally:
            watching.cancel()

    return EventStream(stream(), ping=0, headers={"Cache-Control": "no-store"})


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


async def all_stream(request: Request) -> EventStream:
    svc: Services = request.app.state.svc
    after = _last_event_id(request)
    if after is None:
        async with reading(svc.engine) as conn:
            after = await events.last_id(conn)
    return EventStream(
        _follow(request, None, after, events.GLOBAL_TYPES), ping=0, headers={"Cache-Control": "no-store"}
    )
