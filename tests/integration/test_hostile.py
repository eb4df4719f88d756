"""Hostile input: malformed bodies, a fuzzer, path traversal, secrets that must never leak, URLs a
runbook may not open, and captured page text that tries to run script on the job page."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from playwright.async_api import async_playwright
from sqlalchemy import func, select

from orchestrator import auth, jobs
from orchestrator.db import tables as t
from orchestrator.db.engine import reading
from tests.integration.conftest import Env, bearer, http_client, live_server, step
from tests.support import CHROMIUM, signed_in_page, sse
from worker.browser import CHROMIUM_ARGS

TYPED = """
name: typed
inputs:
  name: {type: string, required: true}
  count: {type: integer, minimum: 1, maximum: 10}
  ratio: {type: number}
  urgent: {type: boolean}
  colour: {type: string, enum: [red, green]}
steps:
  - {id: one, action: set, values: {a: 1}}
"""


async def job_count(env: Env) -> int:
    async with reading(env.svc.engine) as conn:
        return int((await conn.execute(select(func.count()).select_from(t.jobs))).scalar() or 0)


BAD_BODIES: list[tuple[str, bytes, int, str]] = [
    ("truncated JSON", b'{"inputs": {', 400, "not valid JSON"),
    ("not an object", b"[1, 2]", 422, "body"),
    ("inputs not an object", b'{"inputs": [1]}', 422, "inputs"),
    ("unknown field", b'{"inputs": {"name": "x"}, "surprise": 1}', 422, "surprise"),
    ("wrong type", b'{"inputs": {"name": "x", "count": "many"}}', 422, "count"),
    ("out of range", b'{"inputs": {"name": "x", "count": 11}}', 422, "count"),
    ("missing required", b'{"inputs": {}}', 422, "name"),
    ("unknown input", b'{"inputs": {"name": "x", "other": 1}}', 422, "other"),
    ("invalid UTF-8", b'{"inputs": {"name": "\xff\xfe"}}', 400, "UTF-8"),
    ("lone surrogate", b'{"inputs": {"name": "\\ud800"}}', 400, "UTF-8"),
    ("NaN", b'{"inputs": {"name": "x", "ratio": NaN}}', 400, "NaN"),
    ("infinite number", b'{"inputs": {"name": "x", "ratio": 1e999}}', 400, "too large"),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),
    ("huge string", b'{"inputs": {"name": "' + b"a" * 200_000 + b'"}}', 422, "name"),
    ("huge tag", b'{"inputs": {"name": "x"}, "tags": ["' + b"t" * 500 + b'"]}', 422, "tags"),
    ("bad priority", b'{"inputs": {"name": "x"}, "priority": "urgent!"}', 422, "priority"),
    ("bad run_at", b'{"inputs": {"name": "x"}, "run_at": "tomorrow"}', 422, "run_at"),
]


@pytest.mark.parametrize(("label", "body", "status", "names"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
async def test_a_bad_body_gets_a_4xx_naming_the_problem_and_creates_no_job(
    env: Env, label: str, body: bytes, status: int, names: str
) -> None:
    env.write(TYPED)
    async with http_client(env.settings) as http:
        answer = await http.post(
            "/api/v1/runbooks/typed/jobs", content=body, headers={"Content-Type": "application/json"}
        )
    assert answer.status_code == status, answer.text
    assert names in json.dumps(answer.json()), answer.json()
    assert await job_count(env) == 0


async def test_a_body_over_the_limit_is_refused_with_413_before_it_is_read(env: Env) -> None:
    env.write(TYPED)
    async with http_client(env.settings) as http:
        declared = await http.post(
            "/api/v1/runbooks/typed/jobs", content=b"{}", headers={"Content-Length": str(64 * 1024 * 1024)}
        )
        assert declared.status_code == 413

        async def chunks() -> Any:
            for _ in range(20):
                yield b" " * (1024 * 1024)

        streamed = await http.post("/api/v1/runbooks/typed/jobs", content=chunks())
        assert streamed.status_code == 413
        assert "larger than" in streamed.json()["error"]
    assert await job_count(env) == 0


def _nested(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    _nested,
    max_leaves=12,
)
FIELDS = ["inputs", "priority", "tags", "data", "run_at", "idempotency_key", "preview"]
INPUT_VALUES = {
    "name": JSONISH,
    "count": JSONISH | st.integers(-5, 20).map(str),
    "ratio": JSONISH,
    "urgent": JSONISH | st.sampled_from(["yes", "no", "true", "0"]),
    "colour": JSONISH | st.sampled_from(["red", "green", "blue"]),
}
BODIES = st.one_of(
    st.binary(max_size=200),  # anything at all
    JSONISH.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {},
        optional={
            "inputs": st.fixed_dictionaries({}, optional=INPUT_VALUES) | JSONISH,
            **{name: JSONISH for name in FIELDS if name != "inputs"},
            "surprise": JSONISH,
        },
    ).map(lambda v: json.dumps(v).encode()),
)


async def test_a_thousand_fuzzed_requests_to_job_creation_never_get_a_5xx(env: Env) -> None:
    env.write(TYPED)
    env.settings = dataclasses.replace(env.settings, job_rate=0)  # not rate limited here
    statuses: dict[int, int] = {}
    created = 0
    async with http_client(env.settings) as http:
        loop = asyncio.get_running_loop()
        examples: list[bytes] = []

        @settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(BODIES)
        def collect(body: bytes) -> None:
            examples.append(body)

        await loop.run_in_executor(None, collect)
        assert len(examples) >= 1000
        for body in examples:
            answer = await http.post(
                "/api/v1/runbooks/typed/jobs", content=body, headers={"Content-Type": "application/json"}
            )
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
            assert answer.status_code < 500, (body[:300], answer.text)
            if answer.status_code in (200, 201):
                created += answer.status_code == 201
            else:
                assert "error" in answer.json()
    assert await job_count(env) == created
    assert statuses.get(422, 0) > 100 and statuses.get(400, 0) > 10, statuses


# -- artifacts -------------------------------------------------------------------------------

EXPORT = """
name: export
steps:
  - {id: out, action: export, format: json, data: {a: 1}, filename: "../../../etc/evil.json"}
"""


async def test_artifacts_are_stored_under_server_names_and_traversal_finds_nothing(env: Env) -> None:
    job = await env.run(EXPORT)
    assert job["status"] == "completed", job["error"]
    (artifact,) = job["artifacts"]
    stored = env.artifact_path(job["id"], artifact["id"])
    assert stored.is_relative_to(env.settings.artifacts_dir)
    assert ".." not in stored.name and "evil" not in stored.parent.name
    other = await env.run(EXPORT.replace("name: export", "name: export-two"))
    async with http_client(env.settings, role="viewer") as http:
        good = await http.get(artifact["url"])
        assert good.status_code == 200
        assert good.headers["x-content-type-options"] == "nosniff"
        assert good.headers["content-disposition"].startswith("attachment")
        base = f"/api/v1/jobs/{job['id']}/artifacts/"
        attempts = [
            "../../../../etc/passwd",
            "..%2F..%2F..%2Fetc%2Fpasswd",
            "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
            "%2Fetc%2Fpasswd",
            "/etc/passwd",
            f"{artifact['id']}%00.png",
            "..%5C..%5Cwindows%5Cwin.ini",
            stored.name,  # the file's stored name is not an id
            other["artifacts"][0]["id"],  # another job's artifact through this job
        ]
        for attempt in attempts:
            answer = await http.get(base + attempt)
            assert answer.status_code == 404, (attempt, answer.status_code)
            assert b"root:" not in answer.content


# -- secrets ---------------------------------------------------------------------------------

SECRET = "Zebra-s3cr3t-4711"
SECRETIVE = """
name: secretive
inputs:
  password: {type: string, secret: true}
settings: {step_timeout: 10}
steps:
  - {id: open, action: goto, url: "{{ site.url }}/form.html"}
  - {id: type, action: fill, selector: "#notes", value: "pw {{ inputs.password }}"}
  - {id: save, action: click, selector: "#save"}
  - {id: read, action: extract, selector: "#result", save_as: saved}
  - {id: copy, action: set, values: {copy: "{{ inputs.password }}"}}
  - {id: broken, action: goto, url: "{{ site.url }}/missing-{{ inputs.password }}", continue_on_error: true}
  - {id: dump, action: export, format: json, data: "{{ captured }}", filename: captured.json}
outputs:
  leaked: "{{ inputs.password }}"
"""


async def test_a_secret_input_is_nowhere_in_the_database_redis_events_logs_or_artifacts(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    env.write(SECRETIVE)
    async with http_client(env.settings, role="operator") as http:
        created = await http.post("/api/v1/runbooks/secretive/jobs", json={"inputs": {"password": SECRET}})
        assert created.status_code == 201, created.text
        assert SECRET not in created.text
    job_id = created.json()["id"]
    await env.work()
    job = await jobs.get(env.svc, job_id)
    assert job["status"] == "completed", job["error"]
    assert "********" in step(job, "broken")["error"]  # the error names the URL, masked
    assert job["outputs"]["leaked"] == "********"
    assert SECRET not in json.dumps(job, default=str)

    needle = SECRET.encode()
    for path in env.settings.data_dir.rglob("*"):  # the database (and its WAL) and every artifact
        if path.is_file():
            assert needle not in path.read_bytes(), f"the secret is in {path}"
    async for key in env.svc.redis.scan_iter():
        assert needle not in key
        dumped = await env.svc.redis.dump(key)
        assert dumped is None or needle not in dumped, f"the secret is in Redis key {key!r}"
    assert SECRET not in caplog.text

    headers = await bearer(env.settings, "viewer")
    async with (
        live_server(env.settings) as url,
        httpx.AsyncClient(base_url=url, timeout=30, headers=headers) as client,
        client.stream("GET", f"/api/v1/jobs/{job_id}/events?last_event_id=0") as response,
    ):
        seen = []
        async for event in sse(response):
            seen.append(json.dumps(event.data))
            if event.type == "report":
                break
    assert len(seen) > 5
    assert not any(SECRET in text for text in seen)


# -- URLs a runbook may not open -----------------------------------------------------------

SCHEMES = """
name: schemes
steps:
  - {id: file, action: goto, url: "file:///etc/passwd", continue_on_error: true}
  - {id: chrome, action: goto, url: "chrome://settings", continue_on_error: true}
  - {id: source, action: goto, url: "view-source:http://127.0.0.1/", continue_on_error: true}
  - {id: script, action: goto, url: "javascript:alert(1)", continue_on_error: true}
  - {id: data, action: goto, url: "data:text/html,<p>hi</p>", continue_on_error: true}
"""


async def test_non_web_schemes_are_refused_with_a_clear_step_error(env: Env) -> None:
    job = await env.run(SCHEMES)
    for step_id in ("file", "chrome", "source", "script", "data"):
        error = step(job, step_id)["error"]
        assert "is refused: only http and https pages may be opened" in error, (step_id, error)


HOSTS = """
name: hosts
settings: {step_timeout: 10}
steps:
  - {id: allowed, action: goto, url: "{{ site.url }}/data.html"}
  - {id: denied, action: goto, url: "{{ site.url | replace('127.0.0.1', 'localhost') }}/data.html",
     continue_on_error: true}
  - id: redirected
    action: goto
    url: "{{ site.url }}/redirect?to={{ site.url | replace('127.0.0.1', 'localhost') | urlencode }}%2Fdata.html"
    continue_on_error: true
"""


async def test_denied_hosts_are_refused_also_behind_a_redirect(env: Env) -> None:
    env.settings = dataclasses.replace(env.settings, denied_hosts=("localhost",))
    job = await env.run(HOSTS)
    assert step(job, "allowed")["status"] == "success"
    assert "the host localhost is on ORCH_DENIED_HOSTS" in step(job, "denied")["error"]
    assert step(job, "redirected")["status"] == "failed"
    assert "which is refused: the host localhost is on ORCH_DENIED_HOSTS" in step(job, "redirected")["error"]


async def test_an_allow_list_refuses_every_other_host(env: Env) -> None:
    env.settings = dataclasses.replace(env.settings, allowed_hosts=("*.example.org",))
    job = await env.run(HOSTS)
    assert "the host 127.0.0.1 is not on ORCH_ALLOWED_HOSTS" in step(job, "allowed")["error"]


# -- captured text on the job page ---------------------------------------------------------

HOSTILE = """
name: hostile
settings: {step_timeout: 10}
steps:
  - {id: open, action: goto, url: "{{ site.url }}/hostile.html"}
  - {id: text, action: extract, selector: "#evil", save_as: evil}
  - {id: title, action: set, values: {title: "<img src=x onerror=\\"window.__xss='set'\\">"}}
  - {id: fail, action: assert, selector: "#evil", text: "<script>window.__xss='error'</script>",
     continue_on_error: true}
"""


async def test_hostile_captured_text_is_shown_as_text_and_runs_no_script(env: Env, tmp_path: Path) -> None:
    job = await env.run(HOSTILE)
    assert "<script>" in step(job, "text")["captured"]["evil"]
    await auth.add_user(env.svc.engine, "watcher", "viewer", "watcher-password")
    async with live_server(env.settings) as url, signed_in_page(url, "watcher", "watcher-password") as page:
        await page.goto(f"{url}/jobs/{job['id']}")
        await page.wait_for_load_state("networkidle")
        assert await page.evaluate("window.__xss") is None
        body = await page.inner_text("body")
        assert "<script>window.__xss" in body  # shown literally, as text
        assert await page.locator("img[src=x]").count() == 0


MASKED = """
name: masked
inputs:
  password: {type: string, secret: true}
settings: {step_timeout: 10}
steps:
  - {id: open, action: goto, url: "{{ site.url }}/form.html", screenshot: never}
  - {id: name, action: fill, selector: "#name", value: "Ada", screenshot: never}
  - {id: type, action: fill, selector: "#notes", value: "pw {{ inputs.password }}", screenshot: never}
  - {id: shot, action: screenshot, name: after-typing}
"""
MAGENTA = """async (data) => {
  const img = new Image();
  img.src = "data:image/png;base64," + data;
  await img.decode();
  const canvas = document.createElement("canvas");
  canvas.width = img.width; canvas.height = img.height;
  const g = canvas.getContext("2d");
  g.drawImage(img, 0, 0);
  const px = g.getImageData(0, 0, img.width, img.height).data;
  let n = 0;
  for (let i = 0; i < px.length; i += 4) if (px[i] > 240 && px[i + 1] < 20 && px[i + 2] > 240) n++;
  return n;
}"""


async def test_a_field_filled_from_a_secret_is_masked_in_screenshots(env: Env) -> None:
    secret_job = await env.create(env.write(MASKED), {"password": "Zebra-s3cr3t-4711"})
    plain_job = await env.create(env.write(MASKED.replace("{{ inputs.password }}", "not secret")), {"password": "x"})
    await env.work()
    counts = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            for job_id in (secret_job["id"], plain_job["id"]):
                job = await jobs.get(env.svc, job_id)
                assert job["status"] == "completed", job["error"]
                (shot,) = [a for a in job["artifacts"] if a["name"] == "after-typing.png"]
                image = env.artifact_path(job_id, shot["id"]).read_bytes()
                counts.append(await page.evaluate(MAGENTA, base64.b64encode(image).decode()))
        finally:
            await browser.close()
    masked, plain = counts
    assert masked > 1000, "the secret field is covered by the mask"
    assert plain == 0, "a field without a secret is not"
