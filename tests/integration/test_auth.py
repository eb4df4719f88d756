"""Who may do what: every route and action for every role, sessions, CSRF, rate limits, self-approval.

Against the app on a real uvicorn, with users and tokens made the way the CLI makes them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from orchestrator import auth
from orchestrator.db.engine import writing
from orchestrator.states import JobStatus
from orchestrator.transitions import move
from tests.integration.conftest import Env, live_server, to_waiting

PASSWORD = "correct horse battery staple"
ROLES = ["viewer", "operator", "approver", "admin"]
GATE = """
name: gate
steps:
  - {id: ask, action: approval, message: "Go on?"}
"""
SELF = """
name: four-eyes
settings: {self_approval: false}
steps:
  - {id: ask, action: approval, message: "Pay?"}
"""
QUICK = """
name: quick
steps:
  - {id: one, action: export, format: json, data: {a: 1}, filename: a.json}
"""


@dataclasses.dataclass
class Site:
    url: str
    env: Env
    tokens: dict[str, str]
    done_job: str  # a completed job with one export artifact
    artifact: str

    def client(self, role: str | None, **kwargs: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return httpx.AsyncClient(base_url=self.url, timeout=30, headers=headers, **kwargs)

    @contextlib.asynccontextmanager
    async def session(self, username: str, password: str = PASSWORD) -> AsyncIterator[httpx.AsyncClient]:
        """A browser-like client signed in through the login form."""
        async with httpx.AsyncClient(base_url=self.url, timeout=30, follow_redirects=False) as client:
            answer = await client.post(
                "/login", data={"username": username, "password": password}, headers={"Origin": self.url}
            )
            assert answer.status_code == 303, answer.text
            yield client


@pytest.fixture
async def site(env: Env) -> AsyncIterator[Site]:
    env.write(GATE)
    env.write(QUICK)
    env.write(SELF)
    done = await env.create("quick")
    await env.work()
    from orchestrator import jobs

    finished = await jobs.get(env.svc, done["id"])
    assert finished["status"] == "completed", finished["error"]
    tokens = {role: await auth.create_token(env.svc.engine, role, role, created_by="tests") for role in ROLES}
    for role in ROLES:
        await auth.add_user(env.svc.engine, role, role, PASSWORD)
    async with live_server(env.settings) as url:
        yield Site(url, env, tokens, done["id"], finished["artifacts"][0]["id"])


# -- every role x every route ---------------------------------------------------------------

# (method, path template, permission needed; None: any signed-in principal)
API = [
    ("GET", "/api/v1/runbooks", "job:view"),
    ("GET", "/api/v1/runbooks/gate", "job:view"),
    ("POST", "/api/v1/runbooks/gate/jobs", "job:run"),
    ("GET", "/api/v1/jobs", "job:view"),
    ("GET", "/api/v1/jobs/{done}", "job:view"),
    ("GET", "/api/v1/jobs/{done}/artifacts/{artifact}", "job:view"),
    ("GET", "/api/v1/jobs/{done}/events", "job:view"),
    ("GET", "/api/v1/events", "job:view"),
    ("GET", "/api/v1/approvals", "job:view"),
    ("POST", "/api/v1/jobs/{done}/rerun", "job:run"),
    ("POST", "/api/v1/jobs/{waiting}/approve", "job:approve"),
    ("POST", "/api/v1/jobs/{waiting}/reject", "job:approve"),
    ("POST", "/api/v1/jobs/{running}/pause", "job:control"),
    ("POST", "/api/v1/jobs/{paused}/resume", "job:control"),
    ("POST", "/api/v1/jobs/{waiting}/cancel", "job:control"),
]
PAGES = ["/", "/jobs", "/jobs/{done}", "/runbooks", "/runbooks/gate", "/approvals"]


async def _call(client: httpx.AsyncClient, method: str, path: str) -> int:
    if path.endswith("/events"):  # a stream: the status line is the answer
        async with client.stream(method, path) as response:
            return response.status_code
    return (await client.request(method, path, json={})).status_code


async def _fresh_ids(site: Site) -> dict[str, str]:
    """A job in each state an action needs, new for each call (an allowed action changes its job)."""
    env = site.env
    waiting = (await env.create("gate"))["id"]
    await to_waiting(env, waiting)
    running = (await env.create("gate"))["id"]
    paused = (await env.create("gate"))["id"]
    async with writing(env.svc.engine) as conn:
        await move(conn, running, JobStatus.RUNNING)
        await move(conn, paused, JobStatus.RUNNING)
        await move(conn, paused, JobStatus.PAUSED)
    return {"done": site.done_job, "artifact": site.artifact, "waiting": waiting, "running": running, "paused": paused}


@pytest.mark.parametrize("role", [None, *ROLES])
async def test_every_api_route_answers_each_role_by_its_permissions(site: Site, role: str | None) -> None:
    async with site.client(role) as client:
        for method, template, permission in API:
            path = template.format(**await _fresh_ids(site))
            status = await _call(client, method, path)
            if role is None:
                expected = 401
            elif permission in auth.ROLES[role]:
                expected = 201 if method == "POST" and path.endswith(("/jobs", "/rerun")) else 200
            else:
                expected = 403
            assert status == expected, f"{role} {method} {template}: {status}, expected {expected}"


async def test_without_credentials_pages_redirect_to_login_and_a_bad_token_is_401(site: Site) -> None:
    ids = await _fresh_ids(site)
    async with site.client(None) as anonymous:
        for template in PAGES:
            path = template.format(**ids)
            answer = await anonymous.get(path, headers={"Accept": "text/html"})
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/login?next="), path
        api = await anonymous.get("/api/v1/jobs")
        assert api.status_code == 401
        assert api.headers["www-authenticate"].startswith("Bearer")
        assert "Authorization: Bearer" in api.json()["error"]
        forged = await anonymous.get("/api/v1/jobs", headers={"Authorization": "Bearer orch_not-a-real-token"})
        assert forged.status_code == 401
        for public in ("/login", "/healthz", "/static/app.js"):
            assert (await anonymous.get(public)).status_code == 200, public


@pytest.mark.parametrize("role", ROLES)
async def test_pages_show_only_the_buttons_a_role_may_use(site: Site, role: str) -> None:
    ids = await _fresh_ids(site)
    async with site.session(role) as client:
        waiting = (await client.get(f"/jobs/{ids['waiting']}")).text
        running = (await client.get(f"/jobs/{ids['running']}")).text
        runbook = (await client.get("/runbooks/gate")).text
    buttons = set(re.findall(r'data-action="(\w+)"', waiting + running))
    expected = set()
    if "job:approve" in auth.ROLES[role]:
        expected |= {"approve", "reject"}
    if "job:control" in auth.ROLES[role]:
        expected |= {"cancel", "pause"}
    assert buttons == expected
    run_button = re.search(r'<button[^>]*data-role="run-button"[^>]*>', runbook)
    assert run_button is not None
    assert ("disabled" in run_button.group(0)) == ("job:run" not in auth.ROLES[role])


# -- sessions and CSRF -----------------------------------------------------------------------


async def test_a_session_cookie_holds_only_a_signed_id_and_logout_ends_it(site: Site) -> None:
    async with site.session("operator") as client:
        cookie = client.cookies.get("orch_session")
        assert cookie and "operator" not in cookie and PASSWORD not in cookie
        page = await client.get("/jobs")
        assert page.status_code == 200
        assert "operator" in page.text
        csrf = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page.text)
        assert csrf is not None
        answer = await client.post("/logout", data={"csrf_token": csrf.group(1)}, headers={"Origin": site.url})
        assert answer.status_code == 303
        async with site.client(None) as stale:  # the old cookie, replayed, is worthless now
            stale.cookies.set("orch_session", cookie)
            assert (await stale.get("/api/v1/jobs")).status_code == 401


async def test_set_cookie_is_httponly_and_samesite_lax(site: Site) -> None:
    async with site.client(None) as client:
        answer = await client.post(
            "/login", data={"username": "viewer", "password": PASSWORD}, headers={"Origin": site.url}
        )
    header = answer.headers["set-cookie"].lower()
    assert "httponly" in header and "samesite=lax" in header and "path=/" in header
    assert "secure" not in header  # plain http here; behind HTTPS the cookie is Secure


async def test_cookie_writes_need_the_csrf_token_and_this_origin_but_bearer_writes_do_not(site: Site) -> None:
    ids = await _fresh_ids(site)
    async with site.session("operator") as client:
        page = await client.get(f"/jobs/{ids['running']}")
        token = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page.text)
        assert token is not None
        cancel = f"/api/v1/jobs/{ids['running']}/cancel"
        no_token = await client.post(cancel, json={}, headers={"Origin": site.url})
        assert no_token.status_code == 403 and "CSRF" in no_token.json()["error"]
        wrong = await client.post(cancel, json={}, headers={"Origin": site.url, "X-CSRF-Token": "0" * 64})
        assert wrong.status_code == 403
        cross = await client.post(
            cancel, json={}, headers={"Origin": "https://evil.example", "X-CSRF-Token": token.group(1)}
        )
        assert cross.status_code == 403 and "evil.example" in cross.json()["error"]
        no_origin = await client.post(cancel, json={}, headers={"X-CSRF-Token": token.group(1)})
        assert no_origin.status_code == 403
        ok = await client.post(cancel, json={}, headers={"Origin": site.url, "X-CSRF-Token": token.group(1)})
        assert ok.status_code == 200, ok.text
        assert ok.json()["audit"][-1]["actor"] == "operator"
    async with site.client("operator") as bearer:
        answer = await bearer.post(f"/api/v1/jobs/{ids['paused']}/cancel", json={})
        assert answer.status_code == 200
        assert answer.json()["audit"][-1]["actor"] == "token:operator"


async def test_login_refuses_a_wrong_password_and_a_cross_site_form(site: Site) -> None:
    async with site.client(None) as client:
        wrong = await client.post(
            "/login", data={"username": "admin", "password": "not it at all"}, headers={"Origin": site.url}
        )
        assert wrong.status_code == 401
        assert "Wrong username or password" in wrong.text
        assert "orch_session" not in wrong.headers.get("set-cookie", "")
        nobody = await client.post(
            "/login", data={"username": "nobody", "password": PASSWORD}, headers={"Origin": site.url}
        )
        assert nobody.status_code == 401
        cross = await client.post(
            "/login", data={"username": "admin", "password": PASSWORD}, headers={"Origin": "https://evil.example"}
        )
        assert cross.status_code == 403
        away = await client.post(
            "/login?next=//evil.example/x",
            data={"username": "admin", "password": PASSWORD, "next": "//evil.example/x"},
            headers={"Origin": site.url},
        )
        assert away.status_code == 303 and away.headers["location"] == "/jobs"


# -- rate limits -----------------------------------------------------------------------------


async def test_login_attempts_are_rate_limited_with_retry_after(env: Env) -> None:
    env.settings = dataclasses.replace(env.settings, login_rate=3)
    async with live_server(env.settings) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        codes = []
        for _ in range(5):
            answer = await client.post(
                "/login", data={"username": "admin", "password": "guess-guess"}, headers={"Origin": url}
            )
            codes.append(answer.status_code)
        assert codes == [401, 401, 401, 429, 429]
        assert 1 <= int(answer.headers["retry-after"]) <= 60


async def test_job_creation_is_rate_limited_per_principal(env: Env) -> None:
    env.write(GATE)
    env.settings = dataclasses.replace(env.settings, job_rate=2)
    token = await auth.create_token(env.svc.engine, "ci", "operator", created_by="tests")
    async with (
        live_server(env.settings) as url,
        httpx.AsyncClient(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as client,
    ):
        codes = [(await client.post("/api/v1/runbooks/gate/jobs", json={})).status_code for _ in range(3)]
        assert codes == [201, 201, 429]
        listed = (await client.get("/api/v1/jobs")).json()
        assert listed["total"] == 2


# -- self-approval ---------------------------------------------------------------------------


async def test_with_self_approval_false_the_starter_cannot_approve_but_another_approver_can(site: Site) -> None:
    async with site.session("admin") as admin:
        page = await admin.get("/runbooks/four-eyes")
        token = re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page.text)
        assert token is not None
        headers = {"Origin": site.url, "X-CSRF-Token": token.group(1)}
        created = await admin.post("/api/v1/runbooks/four-eyes/jobs", json={}, headers=headers)
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        assert created.json()["created_by"] == "admin"
        await to_waiting(site.env, job_id)
        refused = await admin.post(f"/api/v1/jobs/{job_id}/approve", json={}, headers=headers)
        assert refused.status_code == 403
        assert "self_approval" in refused.json()["error"]
    async with site.client("approver") as approver:
        approved = await approver.post(f"/api/v1/jobs/{job_id}/approve", json={"comment": "checked"})
        assert approved.status_code == 200, approved.text
        audit = [(a["actor"], a["action"], a["outcome"]) for a in approved.json()["audit"]]
        assert audit == [("admin", "approve", "refused: self-approval"), ("token:approver", "approve", "ok")]


async def test_the_first_start_makes_an_admin_with_a_random_password_once(env: Env) -> None:
    from orchestrator.dev import first_admin

    password = await first_admin(env.settings)
    assert password is not None and len(password) >= 12
    assert await first_admin(env.settings) is None  # printed once; later starts make no one
    signed_in = await auth.login(env.svc.engine, "admin", password)
    assert signed_in is not None and signed_in[0].role == "admin"
    assert await auth.login(env.svc.engine, "admin", "admin") is None
