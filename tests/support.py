"""Helpers the test packages share: free ports, a real redis-server, the local target site."""

from __future__ import annotations

import contextlib
import html
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from orchestrator.dev import redis_command

# The Chromium `make test` found or installed: ORCH_BROWSER_PATH, the system's, else None (Playwright's own).
CHROMIUM = os.environ.get("ORCH_BROWSER_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")
SITE_DIR = Path(__file__).parent / "site"
ROOT = Path(__file__).parent.parent


def free_port(address: str = "127.0.0.1") -> int:
    """A port nothing listens on at `address` (an IPv4 or IPv6 address) now."""
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int, process: subprocess.Popen[bytes] | None = None, seconds: float = 15, address: str = "127.0.0.1"
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before port {port} opened")
        with socket.socket() as sock:
            if sock.connect_ex((address, port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port} after {seconds} s")


def stop_process(process: subprocess.Popen[bytes], seconds: float = 10) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def redis_server(directory: Path, address: str = "127.0.0.1") -> Iterator[str]:
    """A real redis-server on a free port of `address`, without persistence; yields its URL."""
    port = free_port()
    directory.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        redis_command(port, directory, persistent=False, address=address),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process, address=address)
        yield f"redis://{address}:{port}/0"
    finally:
        stop_process(process)


#: Every path (with its query) the local target site was asked for, in order: what a runbook did to
#: the "target system", for tests that check something happened once, or never.
SEEN: list[str] = []
#: Called with each path as the request arrives, before it is answered (a test's hook into the target).
ON_REQUEST: list[Any] = []


class SiteHandler(SimpleHTTPRequestHandler):
    """Static files from tests/site, plus /slow?seconds=N which answers late and /redirect?to=URL."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        pass

    def do_GET(self) -> None:
        SEEN.append(self.path)
        for hook in ON_REQUEST:
            hook(self.path)
        url = urlsplit(self.path)
        if url.path == "/slow":
            seconds = float(parse_qs(url.query).get("seconds", ["3"])[0])
            time.sleep(seconds)
            body = b"<!doctype html><title>slow</title><p id='slow'>finally</p>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(body)
            return
        if url.path == "/redirect":  # a 302 to ?to=URL
            self.send_response(302)
            self.send_header("Location", parse_qs(url.query)["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if url.path == "/embed":  # a page with ?frame=URL as an iframe, ?popup=URL behind a button, ?link=URL
            self._embed(parse_qs(url.query))
            return
        if url.path.startswith("/attachment/"):  # files/NAME, sent as a download whatever links to it
            body = (SITE_DIR / "files" / Path(url.path).name).read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Disposition", f'attachment; filename="{Path(url.path).name}"')
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def _embed(self, query: dict[str, list[str]]) -> None:
        parts = ["<!doctype html><title>embed</title><h1 id='embed'>Embedding page</h1>"]
        if "frame" in query:
            parts.append(f"<iframe id='frame' src='{html.escape(query['frame'][0])}'></iframe>")
        if "popup" in query:
            opener = html.escape(f"window.open({json.dumps(query['popup'][0])})")
            parts.append(f"<button id='popup' onclick='{opener}'>Open</button>")
        if "link" in query:
            parts.append(f"<a id='link' href='{html.escape(query['link'][0])}' download>Get the file</a>")
        body = "".join(parts).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def serving(server: ThreadingHTTPServer, name: str) -> Iterator[str]:
    """`server` answering in a daemon thread until the block ends; yields its base URL."""
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield f"http://{server.server_address[0]}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@contextlib.contextmanager
def target_site(address: str = "127.0.0.1") -> Iterator[str]:
    """The local target site (tests/site) on a free port of `address`; yields its base URL."""
    server = ThreadingHTTPServer((address, 0), partial(SiteHandler, directory=str(SITE_DIR)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="target-site", daemon=True)
    thread.start()
    try:
        yield f"http://{address}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def env_without_orch() -> dict[str, str]:
    """The environment minus every ORCH_* variable, so a test decides the configuration."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}


@dataclass
class Event:
    id: int | None  # None for a live frame
    type: str
    data: dict[str, Any]


async def sse(response: httpx.Response, live: bool = False) -> AsyncIterator[Event]:
    """Parse a text/event-stream into events; comments (pings) are skipped, and so are live frames
    (`screenshot` events without an id, never replayed) unless `live`."""
    fields: dict[str, list[str]] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in fields and ("id" in fields or live):
                yield Event(
                    int(fields["id"][0]) if "id" in fields else None,
                    fields.get("event", ["message"])[0],
                    json.loads("\n".join(fields["data"])),
                )
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)


async def sign_in(page: Any, base_url: str, username: str, password: str) -> None:
    """Sign in through the login form, as a person would."""
    await page.goto(f"{base_url}/login")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(lambda url: "/login" not in url)


@contextlib.asynccontextmanager
async def signed_in_page(base_url: str, username: str, password: str) -> AsyncIterator[Any]:
    """A page of a real Chromium, signed in as `username`; the browser closes afterwards."""
    from playwright.async_api import async_playwright

    from worker.browser import CHROMIUM_ARGS

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await sign_in(page, base_url, username, password)
            yield page
        finally:
            await browser.close()


def schemathesis_all_checks(url: str, authorization: str, cwd: Path, examples: int = 8) -> str:
    """Run schemathesis with every check (`--checks all`) against the app at `url`, with the project's
    schemathesis.toml (the rules JSON Schema cannot say); return its output, asserting it found nothing.
    The endless event streams are left out."""
    shutil.copy(ROOT / "schemathesis.toml", cwd / "schemathesis.toml")
    command = [sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json", "--generation-deterministic"]
    command += ["--header", f"Authorization: {authorization}", "--checks", "all", "--exclude-path-regex", "events$"]
    # One worker: hypothesis parses lambdas with `ast` in each thread, and CPython 3.11's AST constructor
    # raises a spurious "recursion depth mismatch" SystemError under threads (python/cpython#106905).
    command += ["--max-examples", str(examples), "--workers", "1", "--request-timeout", "20"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=cwd, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    assert "failures" not in output.strip().splitlines()[-1], output[-8000:]
    return output
