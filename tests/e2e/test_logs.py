"""What `orchestrator dev` prints: every request is in the log, and no secret is (webhook and API tokens,
session cookies, Authorization headers)."""

from __future__ import annotations

import re
import time

import httpx

from tests.e2e.conftest import DevApp

SECRET = re.compile(r"orch_(?:hook_)?[A-Za-z0-9_-]{20,}")


def wait_for_log(dev: DevApp, text: str) -> str:
    """The output once it shows `text` (the access log line is written just after the answer)."""
    deadline = time.monotonic() + 30
    while text not in (output := dev.output()):
        assert time.monotonic() < deadline, f"{text!r} never reached the log:\n{output}"
        time.sleep(0.1)
    return output


async def test_no_token_cookie_or_authorization_header_reaches_the_log(dev: DevApp) -> None:
    api_token = dev.token("admin")
    async with dev.api() as admin:
        made = await admin.post("/api/v1/runbooks/demo-status/hooks")
        assert made.status_code == 201, made.text
        hook = made.json()
    async with httpx.AsyncClient(base_url=dev.url, timeout=30, follow_redirects=False) as anyone:
        by_path = await anyone.post(hook["url"], json={})
        assert by_path.status_code == 201, by_path.text
        by_header = await anyone.post("/api/v1/hooks", json={}, headers={"Authorization": f"Bearer {hook['token']}"})
        assert by_header.status_code == 201, by_header.text
        unknown = await anyone.post(hook["url"][:-4] + "abcd", json={})
        assert unknown.status_code == 404
        signed_in = await anyone.post(
            "/login", data={"username": "admin", "password": dev.admin_password()}, headers={"Origin": dev.url}
        )
        assert signed_in.status_code == 303
        cookie = anyone.cookies["orch_session"]
        assert (await anyone.get("/jobs?probe=cookie")).status_code == 200
        bad = await anyone.get("/api/v1/jobs?probe=bearer", headers={"Authorization": f"Bearer {api_token}x"})
        assert bad.status_code == 401
    output = wait_for_log(dev, "/api/v1/jobs?probe=bearer")
    assert "POST /api/v1/hooks/" in output and "POST /api/v1/hooks " in output  # the calls are logged...
    for secret in (hook["token"], api_token, cookie, cookie.split(".")[0]):
        assert secret not in output  # ...their secrets are not
    assert SECRET.search(output) is None, SECRET.search(output)
