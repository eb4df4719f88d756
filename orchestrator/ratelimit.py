"""Rate limits, counted in Redis so every process shares them; in a process's own memory while Redis
is away, so the limits still hold (per process) rather than not at all."""

from __future__ import annotations

import logging
import math
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from orchestrator.errors import TooManyRequests
from orchestrator.keys import rate_key

log = logging.getLogger(__name__)

_HIT = """
local n = redis.call('incr', KEYS[1])
if n == 1 then redis.call('expire', KEYS[1], ARGV[1]) end
return {n, redis.call('ttl', KEYS[1])}
"""


class LocalCounts:
    """Rate-limit counters in this process's memory: what `rate_limit` counts with while Redis is away,
    so the limits still hold, per process instead of cluster-wide. Fixed windows; at most `size`
    keys (the oldest are forgotten first)."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self.windows: dict[str, tuple[float, int]] = {}  # key -> (window ends at, hits)
        self.warned_until = 0.0

    def hit(self, key: str, window_s: int) -> tuple[int, int]:
        """Count one hit of `key`: (hits in its window so far, seconds left in the window)."""
        now = time.monotonic()
        ends, count = self.windows.pop(key, (0.0, 0))
        if ends <= now:
            ends, count = now + window_s, 0
        self.windows[key] = (ends, count + 1)
        while len(self.windows) > self.size:
            del self.windows[next(iter(self.windows))]
        return count + 1, max(1, math.ceil(ends - now))

    def peek(self, key: str) -> tuple[int, int]:
        """(hits of `key` in its window, seconds left in it), counting nothing; (0, 0) for none."""
        ends, count = self.windows.get(key, (0.0, 0))
        left = math.ceil(ends - time.monotonic())
        return (count, left) if left > 0 else (0, 0)

    def warn(self, exc: BaseException) -> None:
        """Say once a minute (not once a request) that limits are counted here only."""
        now = time.monotonic()
        if now >= self.warned_until:
            self.warned_until = now + 60
            log.warning("Redis is unreachable (%s); rate limits are counted in this process alone", exc)


async def rate_limit(redis: Redis, key: str, limit: int, window_s: int = 60, local: LocalCounts | None = None) -> None:
    """At most `limit` hits per window for `key`, counted in Redis so every web process shares them.
    With Redis away they are counted in `local` (this process's memory) when given, else not at all."""
    if limit <= 0:
        return
    try:
        count, ttl = await redis.eval(_HIT, 1, rate_key(key), str(window_s))  # type: ignore[misc]
    except (RedisError, OSError) as exc:
        if local is None:
            log.warning("rate limit %s not checked: %s", key.split(":", 1)[0], exc)
            return
        local.warn(exc)
        count, ttl = local.hit(key, window_s)
    if int(count) > limit:
        retry = max(int(ttl), 1)
        raise TooManyRequests(f"Too many requests; try again in {retry} s.", retry_after=retry)


async def refuse_when_spent(redis: Redis, key: str, limit: int, local: LocalCounts | None = None) -> None:
    """429 when `key` has used up its `limit` this window, counting nothing: for limits that count
    only failures (rate_limit counts them once they happened)."""
    if limit <= 0:
        return
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.get(rate_key(key))
            pipe.ttl(rate_key(key))
            count, ttl = await pipe.execute()
    except (RedisError, OSError):
        count, ttl = local.peek(key) if local is not None else (0, 0)
    if int(count or 0) >= limit:
        retry = max(int(ttl), 1)
        raise TooManyRequests(f"Too many requests; try again in {retry} s.", retry_after=retry)
