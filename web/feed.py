"""The all-jobs stream's recent events, read once per wake-up for every connection of this web
process: a thousand pages on /api/v1/events cost one database query per change, not a thousand."""

from __future__ import annotations

import asyncio
import json
from bisect import bisect_right

from sqlalchemy.ext.asyncio import AsyncEngine
from sse_starlette import ServerSentEvent

from orchestrator import events
from orchestrator.db.engine import reading

BATCH = 500


def encode(event: events.Event) -> bytes:
    """One stored event as SSE bytes (`id:` is its row id, so a client can resume after it)."""
    return ServerSentEvent(data=json.dumps(event.data), event=event.type, id=str(event.id)).encode()


class Feed:
    def __init__(self, engine: AsyncEngine, hub: events.Hub, types: tuple[str, ...], keep: int = 5000) -> None:
        self._engine, self._hub, self._types, self._keep = engine, hub, types, keep
        self._ids: list[int] = []
        self._rows: list[tuple[int, bytes]] = []  # (id, the event encoded once for every connection)
        self._base: int | None = None  # every event after this id is held here
        self._read_generation = -1
        self._reading: asyncio.Future[None] | None = None

    async def after(self, after: int) -> list[tuple[int, bytes]]:
        """The events after `after` (at most BATCH) as (id, SSE bytes), as the database has them now."""
        if self._base is None:  # the cache starts at the newest event when this process first serves
            async with reading(self._engine) as conn:
                latest = await events.last_id(conn)
            if self._base is None:
                self._base = latest
        reading_now = self._reading is not None and not self._reading.done()
        if reading_now or self._read_generation < self._hub.generation:
            # One read for everybody woken by the same news: they all wait for it, and all go on at
            # once. A read already under way may have started before this caller's news: wait for
            # it too (it reads again while news keeps coming).
            if not reading_now:
                self._reading = asyncio.ensure_future(self._catch_up())
            assert self._reading is not None
            await asyncio.shield(self._reading)
        if after < self._base:  # a replay from further back than this process holds
            async with reading(self._engine) as conn:
                rows = await events.read_after(conn, after, types=self._types, limit=BATCH)
            return [(r.id, encode(r)) for r in rows]
        start = bisect_right(self._ids, after)
        return self._rows[start : start + BATCH]

    async def _catch_up(self) -> None:
        while self._read_generation < self._hub.generation:
            self._read_generation = self._hub.generation  # all announced so far is committed
            await self._read()

    async def _read(self) -> None:
        while True:
            top = self._ids[-1] if self._ids else self._base
            assert top is not None
            async with reading(self._engine) as conn:
                rows = await events.read_after(conn, top, types=self._types, limit=BATCH)
            self._ids += [r.id for r in rows]
            self._rows += [(r.id, encode(r)) for r in rows]
            if len(self._ids) > self._keep:
                cut = len(self._ids) - self._keep // 2
                self._base = self._ids[cut - 1]
                del self._ids[:cut], self._rows[:cut]
            if len(rows) < BATCH:
                return
