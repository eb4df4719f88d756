"""Server-sent events: a snapshot or an exact replay after Last-Event-ID, then live rows as they commit.

Nothing runs away: one user holds at most ORCH_SSE_STREAMS_PER_USER streams of a web process (more
answer 429), a stream ends at the heartbeat after its session or token ended (signed out, password
changed, user disabled, token revoked), and a client more than ORCH_SSE_REPLAY_MAX events behind is
not replayed all it missed: a job stream sends a fresh `snapshot`, the all-jobs stream the newest
ORCH_SSE_REPLAY_MAX events (orchestrator/events.py `resume_point`)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import select
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from orchestrator import events
from orchestrator.auth import Principal
from orchestrator.db import tables as t
from orchestrator.db.engine import reading
from orchestrator.errors import JobNotFound, NotFound, TooManyRequests
from orchestrator.keys import frame_key, watch_key
from orchestrator.services import Services
from orchestrator.views import iso, job_view
from web.auth import COOKIE, require, still_signed_in
from web.feed import BATCH, Feed, encode

log = logging.getLogger(__name__)

HEARTBEAT_S = 15
PING = b": ping\r\n\r\n"
WATCH_TTL_MS = 3000
#: A credential's check is shared by the streams that ask within this many seconds (they all ask at
#: the same heartbeat).
CHECK_FRESH_S = 1.0


class EventStream(EventSourceResponse):
    """sse-starlette's response, minus its per-send cancel scope when no send timeout is set, and
    giving its place back (`release`) however it ends.

    `_send_with_timeout` wraps every send in `anyio.move_on_after(None)`, which looks up the async
    library and builds a cancel scope each time: a tenth of the web process's CPU with a thousand
    streams (measured with py-spy, bench/watching.py). Our streams set no send timeout: a client
    that stops reading blocks only its own stream, which holds no queue. Should the private method
    be renamed upstream, this override stops applying and the streams only get slower."""

    def __init__(self, *args: Any, release: Callable[[], None] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self._release is not None:
                self._release()

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        if self.send_timeout is None:
            await send(message)
        else:
            await super()._send_with_timeout(send, message)


class Streams:
    """This web process's event streams: at most `per_user` open for one principal (0: no cap), and
    whether the credentials a stream was opened with still hold, checked once per credential however
    many streams share it (the heartbeat rings them all at once): a thousand streams of one token
    cost one query per heartbeat, and an event costs none."""

    def __init__(self, per_user: int) -> None:
        self.per_user = per_user
        self._open: Counter[str] = Counter()
        self._checks: dict[str, tuple[float, asyncio.Future[bool]]] = {}

    @property
    def open(self) -> int:
        """The streams open in this web process now (orchestrator_sse_connections)."""
        return sum(self._open.values())

    def claim(self, principal: Principal) -> Callable[[], None]:
        """A place for one more stream of `principal` (429 when it has all it may), and what gives it back."""
        key = principal.actor
        if self.per_user and self._open[key] >= self.per_user:
            raise TooManyRequests(
                f"You have {self._open[key]} event streams open, the most one user may have "
                "(ORCH_SSE_STREAMS_PER_USER); close a page or stream you no longer watch and try again.",
                retry_after=HEARTBEAT_S,
            )
        self._open[key] += 1
        given_back = False

        def release() -> None:
            nonlocal given_back
            if not given_back:
                given_back = True
                self._open[key] -= 1
                if self._open[key] <= 0:
                    del self._open[key]

        return release

    async def still_valid(self, request: Request) -> bool:
        """Whether the request's session or token still signs someone in. Should the check itself fail
        (the database away), the stream goes on: the next heartbeat asks again."""
        key = _credential(request)
        now = time.monotonic()
        found = self._checks.get(key)
        if found is None or now - found[0] > CHECK_FRESH_S:
            self._forget_old(now)
            found = (now, asyncio.ensure_future(still_signed_in(request)))
            self._checks[key] = found
        try:
            return await asyncio.shield(found[1])
        except Exception as exc:  # noqa: BLE001 - a stream outlives a failed check, not an ended session
            log.warning("could not check an event stream's credentials (%s); checking again later", exc)
            return True

    def _forget_old(self, now: float) -> None:
        if len(self._checks) > 64:
            for key in [k for k, (at, _) in self._checks.items() if now - at > CHECK_FRESH_S]:
                del self._checks[key]


def _credential(request: Request) -> str:
    """What identifies the credentials of a request (a digest: no token is kept as a key)."""
    presented = f"{request.headers.get('authorization', '')}\0{request.cookies.get(COOKIE, '')}"
    return hashlib.sha256(presented.encode()).hexdigest()


def _streams(request: Request) -> Streams:
    return request.app.state.streams  # type: ignore[no-any-return]


def _last_event_id(request: Request) -> int | None:
    """The id a client resumes after; None for none, and for one that is not an event id at all (such
    a client starts afresh, as a new one does)."""
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    if raw is None or not re.fullmatch(r"[0-9]{1,18}", raw):
        return None
    return int(raw)


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
    """Events after `after` as they commit, and a ping each heartbeat; the stream ends at the heartbeat
    after its credentials stopped holding (the client's reconnect then gets a 401)."""
    svc: Services = request.app.state.svc
    feed: Feed = request.app.state.feed
    streams = _streams(request)
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
                if not await streams.still_valid(request):
                    return
                yield PING  # keeps proxies from closing an idle stream, and finds clients that left
            if not (more or subscription.news or subscription.frame or subscription.beat):
                await subscription.wait()


async def _keep_watching(svc: Services, job_id: str) -> None:
    """While a page follows this job, its worker streams live frames (worker/screencast.py)."""
    while True:
        with contextlib.suppress(RedisError, OSError):
            await svc.redis.set(watch_key(job_id), 1, px=WATCH_TTL_MS)
        await asyncio.sleep(WATCH_TTL_MS / 3000)


async def job_stream(request: Request) -> EventStream:
    job_id = request.path_params["job_id"]
    svc: Services = request.app.state.svc
    after = _last_event_id(request)
    async with reading(svc.engine) as conn:
        snapshot: dict[str, Any] | None = None
        if (
            after is not None
            and await events.resume_point(conn, after, svc.settings.sse_replay_max, job_id) is not None
        ):
            after = None  # too far behind to replay: a fresh snapshot instead
        if after is None:
            after = await events.last_id(conn, job_id)  # read before the view: later news is replayed, not lost
            snapshot = await job_view(conn, job_id, svc.settings.job_records)
        elif (await conn.execute(select(t.jobs.c.id).where(t.jobs.c.id == job_id))).first() is None:
            raise JobNotFound(f"No job has the id {job_id}.")
    release = _streams(request).claim(require(request))

    async def stream() -> AsyncIterator[ServerSentEvent | bytes]:
        watching = asyncio.create_task(_keep_watching(svc, job_id))
        try:
            if snapshot is not None:
                yield ServerSentEvent(data=json.dumps(snapshot), event="snapshot", id=str(after))
            # the latest live frame at once: a page that does not change makes no new one (a job waiting
            # for a person, watched already by someone else, whose screencast is running)
            with contextlib.suppress(RedisError, OSError):
                if await svc.redis.exists(frame_key(job_id)):
                    now = time.time()
                    yield _frame_event({"job_id": job_id, "seq": int(now * 1000), "at": now})
            async for item in _follow(request, job_id, after, None, frames=True):
                yield item
        finally:
            watching.cancel()

    return EventStream(stream(), ping=0, headers={"Cache-Control": "no-store"}, release=release)


async def frame(request: Request) -> Response:
    """GET /api/v1/jobs/{id}/frame: the job's latest live frame (JPEG), while somebody watches it."""
    job_id = request.path_params["job_id"]
    svc: Services = request.app.state.svc
    image = await svc.redis.get(frame_key(job_id))
    if image is None:
        async with reading(svc.engine) as conn:
            await job_view(conn, job_id)  # 404 for an unknown job
        raise NotFound(f"Job {job_id} has no live frame now: its page is not open, or nobody has watched it lately.")
    return Response(image, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


async def all_stream(request: Request) -> EventStream:
    """Every job's status, approval and report events. A client too far behind (more than
    ORCH_SSE_REPLAY_MAX events) gets the newest ORCH_SSE_REPLAY_MAX of them, not all it missed: each
    status event carries a job's status, so it sees where the jobs that moved lately stand; for the
    rest it re-reads the job list (this stream has no snapshot)."""
    svc: Services = request.app.state.svc
    feed: Feed = request.app.state.feed
    after = _last_event_id(request)
    if after is None:
        async with reading(svc.engine) as conn:
            after = await events.last_id(conn)
    else:
        after = await feed.resume(after, svc.settings.sse_replay_max)
    release = _streams(request).claim(require(request))
    return EventStream(
        _follow(request, None, after, events.GLOBAL_TYPES),
        ping=0,
        headers={"Cache-Control": "no-store"},
        release=release,
    )
