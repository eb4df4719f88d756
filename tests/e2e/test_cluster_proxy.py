"""Several web processes behind a real nginx (issue 18, item 4): two `orchestrator web` processes, one
worker, one PostgreSQL database and one Redis, and Debian's nginx in front with TLS, as the README's
Deployment section configures it. A job made through one web process is followed live through the
other, a stream resumes across them with Last-Event-ID, a session and its CSRF tokens hold on both,
and behind the proxy cookies are Secure and the sign-in limit counts the client nginx reports, only
when nginx is a trusted proxy (ORCH_TRUSTED_PROXIES)."""

from __future__ import annotations

import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.cluster import Cluster, Site, cluster, job_in, nginx
from tests.support import Event, free_port, sse

RUNBOOK = """
name: watched
steps:
  - {id: first, action: set, values: {a: 1}}
  - {id: wait-1, action: sleep, seconds: 1}
  - {id: second, action: set, values: {b: 2}}
  - {id: wait-2, action: sleep, seconds: 1}
  - {id: third, action: set, values: {c: 3}}
"""

#: nginx reaches the web processes from this address on its TLS site, which the web trusts ...
TRUSTED = "127.0.0.2"
#: ... and from this one on its plain site, which the web does not.
UNTRUSTED = "127.0.0.3"


@dataclass
class Proxied:
    cluster: Cluster
    web_a: str
    web_b: str
    tls: Site  # nginx with TLS, a trusted proxy
    plain: Site  # nginx without TLS, from an address the web does not trust
    trust: ssl.SSLContext  # trusts nginx's certificate
    token: str
    password: str  # of the operator `olive`

    def api(self, url: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def through_nginx(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.tls.url, verify=self.trust, timeout=30)


@pytest.fixture(scope="module")
async def proxied(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Proxied]:
    tmp = Path(tmp_path_factory.mktemp("proxied"))
    tls = Site(free_port(), TRUSTED, tls=True)
    plain = Site(free_port(), UNTRUSTED, tls=False)
    settings = {"ORCH_TRUSTED_PROXIES": TRUSTED, "ORCH_PUBLIC_URL": tls.url, "ORCH_WORKER_CONCURRENCY": "2"}
    async with cluster(tmp, {"watched": RUNBOOK}, **settings) as running:
        web_a, web_b = await running.web("web-a"), await running.web("web-b")
        running.start("worker", "worker")
        upstreams = [web_a.removeprefix("http://"), web_b.removeprefix("http://")]
        with nginx(tmp / "nginx", upstreams, [tls, plain]) as trust:
            yield Proxied(running, web_a, web_b, tls, plain, trust, running.token(), running.user("olive", "operator"))


async def read_until(response: httpx.Response, stop: str) -> list[Event]:
    """The events of a stream up to and including the first of type `stop`."""
    seen = []
    async for event in sse(response):
        seen.append(event)
        if event.type == stop:
            break
    return seen


async def test_a_job_made_on_one_web_is_followed_live_and_resumed_through_the_other(proxied: Proxied) -> None:
    async with proxied.api(proxied.web_a) as on_a, proxied.through_nginx() as via_nginx:
        created = await on_a.post("/api/v1/runbooks/watched/jobs", json={})
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        events = f"/api/v1/jobs/{job_id}/events"

        # through web A, as a page opens it: a snapshot, then live events, until the first step is done
        async with on_a.stream("GET", events) as stream:
            first_part = await read_until(stream, "step")
        assert first_part[0].type == "snapshot"
        last_id = first_part[-1].id

        # the page reconnects, and nginx sends it to web B this time
        headers = {"Authorization": f"Bearer {proxied.token}", "Last-Event-ID": str(last_id)}
        rest: list[Event] = []
        running_meanwhile = []
        b_address = proxied.web_b.removeprefix("http://")
        for _ in range(4):  # round robin: the next stream goes to the other process
            async with via_nginx.stream("GET", events, headers=headers) as stream:
                assert stream.status_code == 200
                if stream.headers["x-upstream"] != b_address:
                    continue
                async for event in sse(stream):
                    rest.append(event)
                    job = (await on_a.get(f"/api/v1/jobs/{job_id}")).json()
                    running_meanwhile.append(job["status"] == "running")
                    if event.type == "report":
                        break
            break
        assert rest, f"nginx never sent the stream to web B:\n{proxied.cluster.logs()}"
        # live: events came while the job still ran, not in one piece at its end (buffered)
        assert any(running_meanwhile[:-1]), running_meanwhile
        assert rest[-1].type == "report" and rest[-1].data["status"] == "completed", rest[-1]

    # exactly the events the database holds after the snapshot, each once, in order
    stored = await proxied.cluster.rows(
        "SELECT id FROM job_events WHERE job_id = $1 AND id > $2 ORDER BY id", job_id, first_part[0].id
    )
    received = [e.id for e in first_part[1:] + rest]
    assert received == [row["id"] for row in stored]
    assert [e.data["step"]["id"] for e in rest if e.type == "step" and e.data["step"]["status"] == "success"][
        -1
    ] == "third"


def csrf_of(page: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', page)
    assert found, page[:2000]
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, origin: str, password: str, **headers: str) -> httpx.Response:
    return await client.post(
        "/login",
        data={"username": "olive", "password": password, "next": "/jobs"},
        headers={"Origin": origin, **headers},
    )


async def test_a_session_and_its_csrf_tokens_hold_on_every_web_process(proxied: Proxied) -> None:
    async with httpx.AsyncClient(base_url=proxied.web_a, timeout=30) as browser:
        signed = await sign_in(browser, proxied.web_a, proxied.password)
        assert signed.status_code == 303, signed.text
        cookie = browser.cookies["orch_session"]
        assert "secure" not in signed.headers["set-cookie"].lower()  # plain HTTP, straight to the process

        # the cookie web A set signs in on web B; B renders the page, A's form token works on B
        on_b = httpx.AsyncClient(base_url=proxied.web_b, cookies={"orch_session": cookie}, timeout=30)
        async with on_b:
            page_b = await on_b.get("/jobs")
            assert page_b.status_code == 200 and "olive" in page_b.text
            token_from_a = csrf_of((await browser.get("/runbooks/watched")).text)
            made = await on_b.post(
                "/api/v1/runbooks/watched/jobs",
                json={},
                headers={"X-CSRF-Token": token_from_a, "Origin": proxied.web_b},
            )
            assert made.status_code == 201, made.text
            forged = await on_b.post(
                "/api/v1/runbooks/watched/jobs",
                json={},
                headers={"X-CSRF-Token": token_from_a[:-2] + "xx", "Origin": proxied.web_b},
            )
            assert forged.status_code == 403, forged.text
            # the sign-out form of a page web A rendered, sent to web B, ends the session everywhere
            form_token = re.search(r'name="csrf_token" value="([^"]+)"', (await browser.get("/jobs")).text)
            assert form_token
            out = await on_b.post(
                "/logout", data={"csrf_token": form_token.group(1)}, headers={"Origin": proxied.web_b}
            )
            assert out.status_code == 303 and out.headers["location"] == "/login"
        after = await browser.get("/jobs")
        assert after.status_code == 303 and after.headers["location"].startswith("/login")
        async with proxied.api(proxied.web_a) as api:
            await job_in(api, made.json()["id"], "completed")


async def test_behind_the_trusted_proxy_cookies_are_secure_and_links_stay_on_https(proxied: Proxied) -> None:
    b_address = proxied.web_b.removeprefix("http://")
    async with proxied.through_nginx() as client:
        away = await client.get("/jobs")
        assert away.status_code == 303
        assert away.headers["location"] == "/login?next=%2Fjobs"  # on the https origin the browser is on
        signed = await sign_in(client, proxied.tls.url, proxied.password)
        assert signed.status_code == 303, signed.text
        assert signed.headers["location"] == "/jobs"
        set_cookie = signed.headers["set-cookie"].lower()
        assert "; secure" in set_cookie and "; httponly" in set_cookie and "samesite=lax" in set_cookie
        served_by = set()
        for _ in range(4):  # round robin: both web processes know the session
            page = await client.get("/jobs")
            assert page.status_code == 200 and "olive" in page.text
            assert "http://" not in page.text  # no link leaves https
            served_by.add(page.headers["x-upstream"])
        assert b_address in served_by and len(served_by) == 2
        token = csrf_of(page.text)
        made = await client.post(
            "/api/v1/runbooks/watched/jobs", json={}, headers={"X-CSRF-Token": token, "Origin": proxied.tls.url}
        )
        assert made.status_code == 201, made.text

    # the same header from a client that is not a trusted proxy changes nothing
    async with httpx.AsyncClient(base_url=proxied.web_a, timeout=30) as direct:
        signed = await sign_in(direct, proxied.web_a, proxied.password, **{"X-Forwarded-Proto": "https"})
        assert signed.status_code == 303, signed.text
        assert "secure" not in signed.headers["set-cookie"].lower()


async def wrong_sign_ins(site: Site, trust: ssl.SSLContext, source: str, count: int) -> list[int]:
    """`count` wrong sign-ins through nginx's `site` from the address `source`, each for another user
    name and each naming another client in its own X-Forwarded-For."""
    transport = httpx.AsyncHTTPTransport(local_address=source, verify=trust)
    async with httpx.AsyncClient(base_url=site.url, transport=transport, timeout=30) as client:
        codes = []
        for n in range(count):
            answer = await client.post(
                "/login",
                data={"username": f"nobody-{source}-{n}", "password": "wrong-password"},
                headers={"Origin": site.url, "X-Forwarded-For": f"203.0.113.{n}"},
            )
            codes.append(answer.status_code)
        return codes


async def test_the_sign_in_limit_counts_the_client_nginx_reports_only_from_a_trusted_proxy(proxied: Proxied) -> None:
    # ORCH_LOGIN_RATE: 10 a minute per client address, counted in Redis for both web processes.
    # Through the trusted proxy each client is itself, whatever X-Forwarded-For it sends on its own:
    # nginx appends the address it sees and the web takes the last address that is not a proxy.
    assert await wrong_sign_ins(proxied.tls, proxied.trust, "127.0.0.11", 11) == [401] * 10 + [429]
    assert await wrong_sign_ins(proxied.tls, proxied.trust, "127.0.0.12", 11) == [401] * 10 + [429]
    # Through a proxy the web does not trust, every client is that proxy: two clients share one limit.
    assert await wrong_sign_ins(proxied.plain, proxied.trust, "127.0.0.13", 6) == [401] * 6
    assert await wrong_sign_ins(proxied.plain, proxied.trust, "127.0.0.14", 5) == [401] * 4 + [429]
