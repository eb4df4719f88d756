"""A cluster for the end-to-end tests of issue 18: the Procfile's processes (`orchestrator web`,
`orchestrator worker`, `orchestrator scheduler`) started as the README's Deployment section starts
them, with ORCH_* variables only, sharing one scratch PostgreSQL database and one Redis and nothing
else (each process has a data folder of its own), and a real nginx in front of the web processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from orchestrator.dev import scratch_postgres
from tests.support import CHROMIUM, ROOT, env_without_orch, free_port, redis_server, wait_for_port

ORCHESTRATOR = str(ROOT / ".venv" / "bin" / "orchestrator")
NGINX = "/usr/sbin/nginx"


@dataclass
class Cluster:
    """The processes started so far, by name; the environment they share; their logs under `tmp`."""

    tmp: Path
    env: dict[str, str]
    database_url: str
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, command: str, **extra: str) -> subprocess.Popen[bytes]:
        """`orchestrator COMMAND` as process `name`: the shared environment, a data folder of its own,
        its output in `tmp/NAME.log`, a process group of its own (so its Chromium goes with it)."""
        env = {**self.env, "ORCH_DATA_DIR": str(self.tmp / name / "var"), **extra}
        (self.tmp / name).mkdir(exist_ok=True)
        with (self.tmp / f"{name}.log").open("ab") as out:
            child = subprocess.Popen(
                [ORCHESTRATOR, command],
                env=env,
                cwd=self.tmp / name,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.children[name] = child
        return child

    async def web(self, name: str) -> str:
        """A web process on a free port of 127.0.0.1, once it answers /healthz; returns its URL."""
        port = free_port()
        child = self.start(name, "web", ORCH_HOST="127.0.0.1", ORCH_PORT=str(port))
        url = f"http://127.0.0.1:{port}"
        async with asyncio.timeout(60), httpx.AsyncClient(timeout=2) as client:
            while True:
                assert child.poll() is None, f"{name} exited:\n{self.logs()}"
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{url}/healthz")).status_code == 200:
                        return url
                await asyncio.sleep(0.1)

    def signal(self, name: str, sig: signal.Signals) -> None:
        """Send `sig` to the process itself (not its group: a SIGKILLed worker leaves its children, as a
        crash would)."""
        os.kill(self.children[name].pid, sig)

    def stop(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for child in self.children.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):  # what is left of the group (a killed worker's)
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-tail:]}" for p in sorted(self.tmp.glob("*.log"))
        )

    def cli(self, *args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The `orchestrator` command with the cluster's environment, as an operator runs it."""
        return subprocess.run(
            [ORCHESTRATOR, *args],
            env={**self.env, "ORCH_DATA_DIR": str(self.tmp / "cli" / "var")},
            cwd=self.tmp,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def token(self, role: str = "admin") -> str:
        """A new API token (`orchestrator tokens create`): the last line it prints."""
        made = self.cli("tokens", "create", f"e2e-{role}-{secrets.token_hex(3)}", "--role", role)
        assert made.returncode == 0, made.stderr
        return made.stdout.strip().splitlines()[-1]

    def user(self, name: str, role: str) -> str:
        """A new user (`orchestrator users add --password-stdin`); returns the password."""
        password = secrets.token_urlsafe(12)
        made = self.cli("users", "add", name, "--role", role, "--password-stdin", stdin=password + "\n")
        assert made.returncode == 0, made.stderr
        return password

    async def rows(self, query: str, *args: Any) -> list[asyncpg.Record]:
        """What the cluster wrote, read straight from its database."""
        conn = await asyncpg.connect(self.database_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def cluster(tmp: Path, runbooks: dict[str, str], **settings: str) -> AsyncIterator[Cluster]:
    """A scratch PostgreSQL database, a redis-server and the runbooks (name: YAML) in a folder, with
    the environment every process of the cluster shares; no process started yet. Every process is
    stopped before the database is dropped."""
    folder = tmp / "runbooks"
    folder.mkdir()
    for name, text in runbooks.items():
        (folder / f"{name}.yaml").write_text(text)
    with redis_server(tmp / "redis") as redis_url:
        async with scratch_postgres() as database_url:
            env = {
                **env_without_orch(),
                "ORCH_DATABASE_URL": database_url,
                "ORCH_REDIS_URL": redis_url,
                "ORCH_SECRET_KEY": secrets.token_urlsafe(32),  # the same on every host
                "ORCH_RUNBOOKS_DIR": str(folder),
                "ORCH_BROWSER_PATH": CHROMIUM or "",
                **settings,
            }
            running = Cluster(tmp, env, database_url)
            try:
                yield running
            finally:
                running.stop()


async def until(check: Callable[[], Any], seconds: float = 60, every: float = 0.2) -> Any:
    """Wait until `check()` (a coroutine function) returns something true, and return it: a guard
    against hangs, not a speed check."""
    async with asyncio.timeout(seconds):
        while True:
            found = await check()
            if found:
                return found
            await asyncio.sleep(every)


async def job_in(api: httpx.AsyncClient, job_id: str, *statuses: str, seconds: float = 60) -> dict[str, Any]:
    """The job once its status is one of `statuses`."""

    async def look() -> dict[str, Any] | None:
        job: dict[str, Any] = (await api.get(f"/api/v1/jobs/{job_id}")).json()
        return job if job["status"] in statuses else None

    found: dict[str, Any] = await until(look, seconds)
    return found


# -- nginx ----------------------------------------------------------------------------------------

#: What every proxied request gets: HTTP/1.1 to the web processes, the client's Host (with its port:
#: the app compares Origin with it), and X-Forwarded-For / X-Forwarded-Proto set by nginx itself
#: (the web believes them only from ORCH_TRUSTED_PROXIES). The streams get no buffering and a read
#: timeout far above the app's 15 s heartbeat. The README's Deployment section shows the same.
#: UPSTREAM names the site's upstream block.
PROXY = """
    client_max_body_size 16m;  # the app's own limit on a request body
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $http_host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    location ~ ^/api/v1/(jobs/[^/]+/)?events$ {
        proxy_pass http://UPSTREAM;
        proxy_buffering off;
        proxy_cache off;
        proxy_read_timeout 1h;
    }
    location / {
        proxy_pass http://UPSTREAM;
    }
"""

CONFIG = """
user root;
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {tmp}/nginx-access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{sites}
}}
"""


@dataclass
class Site:
    """One server block of the test's nginx: where it listens, whether with TLS, and the address it
    connects to the web processes from (`proxy_bind`: which proxy the web sees)."""

    port: int
    bind: str
    tls: bool

    def block(self, tmp: Path, upstreams: list[str]) -> str:
        """Its upstream block and its server block. Each site has an upstream of its own: nginx keeps
        idle upstream connections per upstream block, whatever `proxy_bind` made them, so a shared
        block would send one site's requests over another's connections, from its address."""
        upstream = f"site_{self.port}"
        servers = "".join(f"        server {address};\n" for address in upstreams)
        listen = f"listen 127.0.0.1:{self.port}{' ssl' if self.tls else ''};"
        certificate = f"ssl_certificate {tmp}/cert.pem; ssl_certificate_key {tmp}/key.pem;" if self.tls else ""
        # which web process answered: the tests check that the other one served a stream
        return (
            f"    upstream {upstream} {{\n{servers}        keepalive 16;\n    }}\n"
            f"    server {{\n    {listen}\n    {certificate}\n    proxy_bind {self.bind};\n"
            f"    add_header X-Upstream $upstream_addr always;\n{PROXY.replace('UPSTREAM', upstream)}    }}"
        )

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"


def self_signed(tmp: Path) -> ssl.SSLContext:
    """A certificate for 127.0.0.1 (openssl), and a client context that trusts it."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(tmp / "key.pem"), "-out", str(tmp / "cert.pem")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return ssl.create_default_context(cafile=str(tmp / "cert.pem"))


@contextlib.contextmanager
def nginx(tmp: Path, upstreams: list[str], sites: list[Site]) -> Iterator[ssl.SSLContext]:
    """Debian's nginx in the foreground with its config, pid, logs and temp files under `tmp` (as root,
    as the tests run), proxying `sites` to the web processes at `upstreams` (host:port); the config
    is checked with `nginx -t` first. Yields a client context that trusts its TLS certificate."""
    tmp.mkdir(parents=True, exist_ok=True)
    trust = self_signed(tmp)
    config = tmp / "nginx.conf"
    config.write_text(CONFIG.format(tmp=tmp, sites="\n".join(s.block(tmp, upstreams) for s in sites)))
    base = [NGINX, "-p", str(tmp), "-e", str(tmp / "nginx-error.log"), "-c", str(config)]
    checked = subprocess.run([*base, "-t"], capture_output=True, text=True, timeout=30, check=False)
    assert checked.returncode == 0, checked.stderr
    with (tmp / "nginx.out").open("wb") as out:
        process = subprocess.Popen(base, stdout=out, stderr=subprocess.STDOUT)
    try:
        for site in sites:
            wait_for_port(site.port, process)
        yield trust
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
