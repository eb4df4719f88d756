"""/openapi.json describes every /api/v1 route, validates, renders on /docs, and holds up to schemathesis."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import httpx
from openapi_spec_validator import validate
from playwright.async_api import expect
from starlette.routing import Route

from orchestrator import auth
from tests.integration.conftest import Env, bearer, http_client, live_server
from tests.support import signed_in_page
from web.app import create_app

RUNBOOK = """
name: described
inputs:
  who: {type: string, required: true}
steps:
  - {id: one, action: set, values: {a: 1}}
"""


async def test_the_document_validates_and_covers_every_api_route(env: Env) -> None:
    async with http_client(env.settings, role=None) as http:
        answer = await http.get("/openapi.json")
    assert answer.status_code == 200
    document = answer.json()
    validate(document)
    described = {
        (path, method.upper()) for path, item in document["paths"].items() for method in item if method != "parameters"
    }
    served = set()
    for route in create_app(env.settings).routes:
        if isinstance(route, Route) and (route.path.startswith("/api/v1") or route.path in ("/healthz", "/metrics")):
            for method in route.methods or ():
                if method != "HEAD":
                    served.add((route.path, method))
    assert served == described


async def test_docs_renders_the_api_from_this_server_without_errors(env: Env) -> None:
    await auth.add_user(env.svc.engine, "reader", "viewer", "reader-password")
    problems: list[str] = []
    async with live_server(env.settings) as url, signed_in_page(url, "reader", "reader-password") as page:
        await page.goto("about:blank")
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
        page.on("response", lambda r: problems.append(f"{r.status}: {r.url}") if r.status >= 400 else None)
        await page.goto(f"{url}/docs")
        await expect(page.get_by_text("Create a job (job:run)")).to_be_visible(timeout=15_000)
        await expect(page.get_by_text("Report a run made elsewhere", exact=False)).to_be_visible()
        assert problems == []


async def test_schemathesis_finds_no_server_error(env: Env, tmp_path: Path) -> None:
    env.write(RUNBOOK)
    job = await env.create("described", {"who": "x"})
    headers = await bearer(env.settings, "admin")
    async with live_server(env.settings) as url:
        async with httpx.AsyncClient(base_url=url, headers=headers) as http:
            assert (await http.get(f"/api/v1/jobs/{job['id']}")).status_code == 200
        command = [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{url}/openapi.json",
            "--header",
            f"Authorization: {headers['Authorization']}",
            "--checks",
            "not_a_server_error",
            "--exclude-path-regex",
            "events$",  # endless streams
            "--max-examples",
            "40",
            "--request-timeout",
            "10",
            "--generation-deterministic",
        ]
        result = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False
        )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert re.search(r"\d+ passed", output) or "passed" in output.lower(), output[-3000:]
