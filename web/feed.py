"""The all-jobs stream's recent events, read once per change for every connection of this web
process: one task reads what was announced, encodes each event once, then wakes the streams, which
take the bytes from memory. A thousand pages on /api/v1/events cost one query per change, and a
stream's wake-up costs no database round trip and no lock."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from bisect import bisect_right
from collections.abc import Iterator

from sqlalchemy.ext.asyncio import AsyncEngine
from sse_starlette import ServerSentEvent

from orchestrator import events
from orchestrator.db.engine import reading

log = logging.getLogger(__name__)
BATCH = 500


def encode(event: events.Event) -> bytes:
    """One stored event as SSE bytes (`id:` is its row id, so a client can resume after it)."""
    return ServerSentEvent(data=json.dumps(event.data), event=event.type, id=str(event.id)).encode()


class Feed:
    def __init__(self, engine: AsyncEngine, hub: events.Hub, types: tuple[str, ...], keep: int = 5000) -> None:
        self._engine, self._hub, self._types, self._keep = engine, hub, types, keep
        self._ids: list[int] = []
        self._rows: list[tuple[int, bytes]] = []  # (id, the event encoded once for every connection)
        self._base = 0  # every event after this id is held here
        self._key = object()  # the hub key this feed's streams wait on
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Hold events from the newest one on; streams that replay from further back read them."""
        async with reading(self._engine) as conn:
            self._base = await events.last_id(conn)
        self._task = asyncio.create_task(self._run(), name="all-jobs-feed")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[events.Subscription]:
        """News once the feed holds it (and the hub's heartbeats) while the block runs."""
        with self._hub.subscribe(self._key) as subscription:
            yield subscription

    async def resume(self, after: int, limit: int) -> int:
        """Where a client that last saw `after` goes on: right after it, unless more than `limit` events
        came since; then at the newest `limit` (from memory when the feed holds that far back)."""
        if after >= self._base:
            held = len(self._ids) - bisect_right(self._ids, after)
            return after if held <= limit else self._ids[-limit - 1]
        async with reading(self._engine) as conn:
            found = await events.resume_point(conn, after, limit, types=self._types)
        return after if found is None else found

    async def after(self, after: int) -> list[tuple[int, bytes]]:
        """The events after `after` (at most BATCH) as (id, SSE bytes), as the feed holds them."""
        if after < self._base:  # a replay from further back than this process holds
            async with reading(self._engine) as conn:
                rows = await events.read_after(conn, after, types=self._types, limit=BATCH)
            return [(r.id, encode(r)) for r in rows]
        start = bisect_right(self._ids, after)
        return self._rows[start : start + BATCH]

    async def _run(self) -> None:
        with self._hub.subscribe(None) as news:
            while True:
                if not news.take_news():
                    await news.wait()
                    continue
                try:
                    await self._read()
                except Exception as exc:  # noqa: BLE001 - the database may come back; streams wait meanwhile
                    log.warning("all-jobs feed could not read events (%s); retrying", exc)
                    news.announce()
                    await asyncio.sleep(1)
                    continue
                self._hub.wake(self._key)

    async def _read(self) -> None:
        while True:
            top = self._ids[-1] if self._ids else self._base
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
