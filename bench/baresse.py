"""The SSE fan-out baseline: a bare sse-starlette app that sends every message published on the
Redis channel `bare` to every client of /api/v1/events (no database, no auth, no middleware)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

CHANNEL = "bare"
queues: set[asyncio.Queue[bytes]] = set()


async def pump() -> None:
    client = aioredis.from_url(os.environ["BARE_REDIS_URL"])
    async with client.pubsub() as pubsub:
        await pubsub.subscribe(CHANNEL)
        async for message in pubsub.listen():
            if message["type"] == "message":
                for queue in queues:
                    queue.put_nowait(message["data"])


async def stream(request: Request) -> EventSourceResponse:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    queues.add(queue)

    async def events() -> AsyncIterator[dict[str, Any]]:
        try:
            while True:
                yield {"event": "status", "data": (await queue.get()).decode()}
        finally:
            queues.discard(queue)

    return EventSourceResponse(events())


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    task = asyncio.create_task(pump())
    yield
    task.cancel()


app = Starlette(routes=[Route("/api/v1/events", stream)], lifespan=lifespan)
