"""Server-sent events: a snapshot or an exact replay after Last-Event-ID, then live rows as they commit."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request

from orchestrator import events
from orchestrator.db.engine import reading
from orchestrator.services import Services
from orchestrator.views import job_view

HEARTBEAT_S = 15


def _last_event_id(request: Request) -> int | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    if raw is None or raw == "":
        return None
    return int(raw) if raw.isdigit() else 0


def _event(event: events.Event) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(event.data), event=event.type, id=str(event.id))


async def _follow(
    request: Request, job_id: str | None, after: int, types: tuple[str, ...] | None
) -> AsyncIterator[ServerSentEvent]:
    svc: Services = request.app.state.svc
    with request.app.state.hub.subscribe(job_id) as news:
        while True:
            async with reading(svc.engine) as conn:
                rows = await events.read_after(conn, after, job_id=job_id, types=types)
            for row in rows:
                yield _event(row)
                after = row.id
            if len(rows) < 500:
                await news.wait(HEARTBEAT_S)


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
        if snapshot is not None:
            yield ServerSentEvent(data=json.dumps(snapshot), event="snapshot", id=str(after))
        async for item in _follow(request, job_id, after, None):
            yield item

    return EventSourceResponse(stream(), ping=HEARTBEAT_S, headers={"Cache-Control": "no-store"})


async def all_stream(request: Request) -> EventSourceResponse:
    svc: Services = request.app.state.svc
    after = _last_event_id(request)
    if after is None:
        async with reading(svc.engine) as conn:
            after = await events.last_id(conn)
    return EventSourceResponse(
        _follow(request, None, after, events.GLOBAL_TYPES), ping=HEARTBEAT_S, headers={"Cache-Control": "no-store"}
    )
