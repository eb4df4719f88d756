"""Sign-in under attack: passwords are checked off the event loop in a bounded pool, attempts are limited
per address and per user name, and the limits still hold while Redis is away.

Against the app on a real uvicorn. Clients come from distinct loopback addresses (127.0.0.N), so the
server sees each one's own address in the ASGI scope, as it would see different machines.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import Counter
from pathlib import Path

import httpx
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from orchestrator import auth
from tests.integration.conftest import Env, bearer, live_server
from tests.support import redis_server

PASSWORD = "correct horse battery staple"


def from_address(url: str, host: int) -> httpx.AsyncClient:
    """A client whose connections come from 127.0.0.`host`."""
    transport = httpx.AsyncHTTPTransport(local_address=f"127.0.0.{host}")
    return httpx.AsyncClient(base_url=url, transport=transport, timeout=60, follow_redirects=False)


async def sign_in(url: str, host: int, username: str, password: str) -> httpx.Response:
    async with from_address(url, host) as client:
        return await client.post("/login", data={"username": username, "password": password}, headers={"Origin": url})


async def test_a_flood_of_sign_ins_is_refused_beyond_the_password_pool_while_other_requests_are_answered(
    env: Env,
) -> None:
    env.settings = dataclasses.replace(env.settings, password_threads=1, password_backlog=2)
    viewer = await bearer(env.settings, "viewer")
    async with live_server(env.settings) as url:

        async def meanwhile() -> tuple[int, int]:
            async with httpx.AsyncClient(base_url=url, timeout=60, headers=viewer) as client:
                health = await client.get("/healthz")
                jobs = await client.get("/api/v1/jobs")
                return health.status_code, jobs.status_code

        flood = [sign_in(url, 10 + n, f"user-{n}", "wrong-password") for n in range(40)]
        *answers, others = await asyncio.gather(*flood, meanwhile())
    codes = Counter(a.status_code for a in answers)
    assert set(codes) <= {401, 503}, codes
    assert codes[401] >= 1 and codes[503] >= 1, codes  # some were checked, the rest refused, none queued
    busy = next(a for a in answers if a.status_code == 503)
    assert "busy" in busy.json()["error"] and int(busy.headers["retry-after"]) >= 1
    assert others == (200, 200)


async def test_sign_ins_for_one_user_name_are_limited_whatever_address_they_come_from(env: Env) -> None:
    await auth.add_user(env.svc.engine, "admin", "admin", PASSWORD)
    env.settings = dataclasses.replace(env.settings, login_user_rate=3)
    async with live_server(env.settings) as url:
        codes = [(await sign_in(url, 20 + n, "admin", f"guess-{n}-guess")).status_code for n in range(5)]
        assert codes == [401, 401, 401, 429, 429]
        locked = await sign_in(url, 30, "admin", PASSWORD)  # the right password waits out the window too
        assert locked.status_code == 429 and 1 <= int(locked.headers["retry-after"]) <= 60
        other = await sign_in(url, 31, "someone-else", "wrong-password")
        assert other.status_code == 401


async def test_only_failed_sign_ins_count_against_a_user_name(env: Env) -> None:
    await auth.add_user(env.svc.engine, "admin", "admin", PASSWORD)
    env.settings = dataclasses.replace(env.settings, login_user_rate=3)
    async with live_server(env.settings) as url:
        codes = [(await sign_in(url, 40 + n, "admin", PASSWORD)).status_code for n in range(5)]
    assert codes == [303] * 5  # signing in often (many tabs, many machines) is no offence


async def test_with_redis_down_each_web_process_still_limits_sign_ins(env: Env, tmp_path: Path) -> None:
    with redis_server(tmp_path / "own-redis") as redis_url:
        settings = dataclasses.replace(env.settings, redis_url=redis_url, login_rate=3)
        async with live_server(settings) as url:
            await shutdown(redis_url)
            codes = [(await sign_in(url, 50, f"name-{n}", "wrong-password")).status_code for n in range(5)]
            per_name = [(await sign_in(url, 51 + n, "same-name", "wrong-password")).status_code for n in range(12)]
    assert codes == [401, 401, 401, 429, 429]
    assert per_name == [401] * 10 + [429, 429]  # login_user_rate (10) holds without Redis too


async def shutdown(redis_url: str) -> None:
    client = aioredis.from_url(redis_url)
    try:
        with contextlib.suppress(RedisConnectionError):
            await client.shutdown(nosave=True)
    finally:
        await client.aclose()
