"""The browser goes only where it should (issue 16): the app's own pages are refused but its demo opens,
and a refused host stays refused behind a redirect, in a frame, in a popup and by its resolved address.

Every refused target here is on this machine's loopback: the metadata addresses are covered without
sending them a packet in tests/unit/test_urlpolicy.py."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
from collections.abc import Iterator
from functools import partial
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

from orchestrator import jobs
from orchestrator.config import Settings
from tests.integration.conftest import Env, LiveServer, open_env, step
from tests.support import SITE_DIR, SiteHandler

OWN = "it is the orchestrator's own web app"

OWN_PAGES = """
name: own-pages
settings: {step_timeout: 10, retries: 0}
steps:
  - {id: demo, action: goto, url: "{{ server.url }}/demo/index.html"}
  - {id: demo-text, action: extract, selector: "#demo", save_as: demo}
  - {id: api, action: goto, url: "{{ server.url }}/api/v1/runbooks", continue_on_error: true}
  - id: redirected
    action: goto
    url: "{{ site.url }}/redirect?to={{ (server.url ~ '/login') | urlencode }}"
    continue_on_error: true
  - {id: shown, action: extract, selector: "body", save_as: shown}
  - id: other-name
    action: goto
    url: "{{ server.url | replace('127.0.0.1', 'localhost') }}/metrics"
    continue_on_error: true
"""


async def test_the_apps_own_pages_are_refused_but_its_demo_opens(settings: Settings, site_url: str) -> None:
    demo = settings.runbooks_dir / "demo"
    demo.mkdir()
    (demo / "index.html").write_text("<!doctype html><title>demo</title><p id='demo'>Demo portal</p>")
    server = LiveServer(settings)  # the app, at the address the worker knows as its own
    own = dataclasses.replace(settings, public_url=server.url, port=server.port)
    server.start()
    try:
        async with open_env(own, site_url) as env:
            job = await env.run(OWN_PAGES)
    finally:
        server.stop()
    assert step(job, "demo")["status"] == "success", step(job, "demo")["error"]
    assert step(job, "demo-text")["captured"] == {"demo": "Demo portal"}
    assert f"The URL '{server.url}/api/v1/runbooks' is refused: {OWN}" in step(job, "api")["error"]
    assert f"The page tried to open {server.url}/login, which is refused: {OWN}" in step(job, "redirected")["error"]
    shown = step(job, "shown")["captured"]["shown"]
    assert "refused" in shown and "Sign in" not in shown, shown  # the refusal, never the login page
    other = server.url.replace("127.0.0.1", "localhost") + "/metrics"  # the same address by another name
    assert f"The URL '{other}' is refused: {OWN}" in step(job, "other-name")["error"]


EMBEDDING = """
name: embedding
settings: {step_timeout: 10, retries: 0}
inputs:
  page: {type: string, required: true}
steps:
  - {id: open, action: goto, url: "{{ inputs.page }}", continue_on_error: true}
  - {id: popup, action: click, selector: "#popup", continue_on_error: true, when: "{{ 'popup=' in inputs.page }}"}
  # the popup's request comes after the click returns: a loaded machine needs a moment to see it refused
  - {id: aside, action: sleep, seconds: 1, continue_on_error: true, when: "{{ 'popup=' in inputs.page }}"}
  - {id: settle, action: wait_for, selector: "#embed", continue_on_error: true}
"""


def embed(site: str, **targets: str) -> str:
    return f"{site}/embed?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in targets.items())


def redirect(site: str, to: str) -> str:
    return f"{site}/redirect?to={quote(to, safe='')}"


def failures(job: dict[str, Any]) -> list[str]:
    return [s["error"] for s in job["steps"] if s["status"] == "failed"]


async def test_a_frame_redirected_to_a_denied_host_fails_its_step(env: Env) -> None:
    env.settings = dataclasses.replace(env.settings, denied_hosts=("localhost",))
    secret = env.site_url.replace("127.0.0.1", "localhost") + "/data.html"
    job = await env.create(env.write(EMBEDDING), {"page": embed(env.site_url, frame=redirect(env.site_url, secret))})
    await env.work()
    job = await jobs.get(env.svc, job["id"])
    assert step(job, "open")["status"] == "failed"
    reason = "the host localhost is on ORCH_DENIED_HOSTS"
    assert step(job, "open")["error"] == f"The page tried to open {secret}, which is refused: {reason}."


async def test_a_popup_to_a_denied_host_fails_a_step(env: Env) -> None:
    env.settings = dataclasses.replace(env.settings, denied_hosts=("localhost",))
    secret = env.site_url.replace("127.0.0.1", "localhost") + "/data.html"
    job = await env.create(env.write(EMBEDDING), {"page": embed(env.site_url, popup=secret)})
    await env.work()
    job = await jobs.get(env.svc, job["id"])
    assert step(job, "open")["status"] == "success"
    # the popup opens after the click returns: its refusal fails the click or the step after it
    assert failures(job) == [
        f"The page tried to open {secret}, which is refused: the host localhost is on ORCH_DENIED_HOSTS."
    ]


async def test_a_host_is_refused_by_the_address_it_resolves_to_also_behind_a_redirect(env: Env) -> None:
    env.settings = dataclasses.replace(env.settings, denied_hosts=("127.0.0.0/8",))
    secret = env.site_url.replace("127.0.0.1", "localhost") + "/data.html"
    reason = "localhost resolves to 127.0.0.1, which is on ORCH_DENIED_HOSTS"
    with ipv6_site() as start:  # the start page is on ::1, which the list allows
        job = await env.create(env.write(EMBEDDING), {"page": redirect(start, secret)})
        await env.work()
        direct = await env.create("embedding", {"page": secret})
        await env.work()
    job, direct = await jobs.get(env.svc, job["id"]), await jobs.get(env.svc, direct["id"])
    assert step(job, "open")["error"] == f"The page tried to open {secret}, which is refused: {reason}."
    assert step(direct, "open")["error"] == f"The URL {secret!r} is refused: {reason}."


@contextlib.contextmanager
def ipv6_site() -> Iterator[str]:
    """The target site again, on the IPv6 loopback address."""

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6

    server = Server(("::1", 0), partial(SiteHandler, directory=str(SITE_DIR)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="ipv6-site", daemon=True)
    thread.start()
    try:
        yield f"http://[::1]:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


DOWNLOADING = """
name: downloading
settings: {step_timeout: 4, retries: 0}
inputs:
  page: {type: string, required: true}
steps:
  - {id: open, action: goto, url: "{{ inputs.page }}"}
  - {id: get, action: download, selector: "#link"}
"""


async def test_a_download_redirected_to_a_denied_host_fails_its_step_and_stores_nothing(env: Env) -> None:
    env.settings = dataclasses.replace(env.settings, denied_hosts=("localhost",))
    secret = env.site_url.replace("127.0.0.1", "localhost") + "/attachment/report.csv"
    job = await env.create(env.write(DOWNLOADING), {"page": embed(env.site_url, link=redirect(env.site_url, secret))})
    await env.work()
    job = await jobs.get(env.svc, job["id"])
    assert step(job, "get")["status"] == "failed"  # the proxy answered with its refusal, which is no download
    assert [a for a in job["artifacts"] if a["kind"] == "download"] == []


EACH_PAGE = """
name: each-page
settings: {step_timeout: 10, retries: 0}
inputs:
  pages: {type: records, required: true}
steps:
  - id: each
    action: for_each
    items: "{{ inputs.pages }}"
    as: page
    record_id: "{{ page.id }}"
    steps:
      - {id: open, action: goto, url: "{{ page.url }}"}
      - {id: read, action: extract, selector: "h1, p", save_as: text}
"""


async def test_a_refusal_fails_the_record_it_happened_in_and_no_other(env: Env) -> None:
    env.settings = dataclasses.replace(env.settings, denied_hosts=("localhost",))
    secret = env.site_url.replace("127.0.0.1", "localhost") + "/data.html"
    pages = [
        {"id": "refused", "url": redirect(env.site_url, secret)},
        {"id": "fine", "url": f"{env.site_url}/data.html"},
        {"id": "also-fine", "url": f"{env.site_url}/form.html"},
    ]
    job = await env.run(EACH_PAGE, {"pages": pages})
    outcome = {r["record_id"]: (r["status"], r["error"]) for r in job["records"]}
    reason = "the host localhost is on ORCH_DENIED_HOSTS"
    assert outcome == {
        "refused": ("failed", f"open: The page tried to open {secret}, which is refused: {reason}."),
        "fine": ("success", None),
        "also-fine": ("success", None),
    }
