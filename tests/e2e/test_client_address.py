"""Whose address a sign-in counts against: the connection's own, or the client an X-Forwarded-For header
names only when the connection comes from a trusted proxy (ORCH_TRUSTED_PROXIES)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import DevApp, start_dev, stop_dev


@pytest.fixture(scope="module")
def behind_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevApp]:
    """`orchestrator dev` that trusts one proxy, 127.0.0.2 (and so no longer 127.0.0.1, the default)."""
    app = start_dev(Path(tmp_path_factory.mktemp("proxy")), {"ORCH_TRUSTED_PROXIES": "127.0.0.2"})
    try:
        yield app
    finally:
        stop_dev(app)


async def wrong_sign_ins(url: str, host: int, forwarded_for: str) -> list[int]:
    """Eleven wrong sign-ins, each for another user name, sent from 127.0.0.`host`, each naming another
    client in X-Forwarded-For (`forwarded_for` with N for the attempt)."""
    transport = httpx.AsyncHTTPTransport(local_address=f"127.0.0.{host}")
    async with httpx.AsyncClient(base_url=url, transport=transport, timeout=30) as client:
        codes = []
        for n in range(11):
            answer = await client.post(
                "/login",
                data={"username": f"name-{host}-{n}", "password": "wrong-password"},
                headers={"Origin": url, "X-Forwarded-For": forwarded_for.format(n=n)},
            )
            codes.append(answer.status_code)
        return codes


async def test_x_forwarded_for_is_believed_from_a_trusted_proxy_only(behind_proxy: DevApp) -> None:
    # ORCH_LOGIN_RATE is 10 a minute per address: the eleventh attempt from one client is refused
    assert await wrong_sign_ins(behind_proxy.url, 1, "203.0.113.{n}") == [401] * 10 + [429]
    assert await wrong_sign_ins(behind_proxy.url, 3, "203.0.113.{n}") == [401] * 10 + [429]
    assert await wrong_sign_ins(behind_proxy.url, 2, "198.51.100.{n}") == [401] * 11  # eleven clients, one each
