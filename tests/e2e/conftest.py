"""The app started the way `make run` starts it (`orchestrator dev` as a subprocess), and a real Chromium."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, async_playwright

from tests.support import CHROMIUM, ROOT, env_without_orch, free_port, redis_server
from worker.browser import CHROMIUM_ARGS

ORCHESTRATOR = str(ROOT / ".venv" / "bin" / "orchestrator")
RUNBOOKS = ROOT / "runbooks"


@dataclass
class DevApp:
    process: subprocess.Popen[bytes]
    url: str
    env: dict[str, str]
    data_dir: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def admin_password(self) -> str:
        """The one-time password `orchestrator dev` printed for the admin it created on first run."""
        found = re.search(r"Sign in as admin with the password (\S+)", self.output())
        assert found, f"orchestrator dev printed no admin password:\n{self.output()}"
        return found.group(1)

    def token(self, role: str = "admin") -> str:
        """A new API token made with `orchestrator tokens create`: its last line of output."""
        made = subprocess.run(
            [ORCHESTRATOR, "tokens", "create", f"e2e-{role}", "--role", role],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return made.stdout.strip().splitlines()[-1]

    def api(self, role: str = "admin") -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30, headers={"Authorization": f"Bearer {self.token(role)}"})


def children(pid: int) -> dict[int, str]:
    """The direct child processes of `pid`: {pid: command name}."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        if parent == pid:
            found[int(entry.name)] = name
    return found


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def start_dev(tmp: Path, extra_env: dict[str, str] | None = None, errors: Path | None = None) -> DevApp:
    """`orchestrator dev` in `tmp`, its output in dev.log (standard error too, unless `errors` names a file)."""
    port = free_port()
    data_dir = tmp / "var"
    env = env_without_orch()
    env.update(
        ORCH_DATA_DIR=str(data_dir),
        ORCH_PORT=str(port),
        ORCH_HOST="127.0.0.1",
        ORCH_RUNBOOKS_DIR=str(RUNBOOKS),
        ORCH_BROWSER_PATH=CHROMIUM or "",
        ORCH_WORKER_CONCURRENCY="2",
    )
    env.update(extra_env or {})  # may replace the defaults above (another runbooks folder, say)
    log = tmp / "dev.log"
    with log.open("wb") as out, (errors or log).open("ab") as err:
        process = subprocess.Popen(
            [ORCHESTRATOR, "dev"], cwd=tmp, env=env, stdout=out, stderr=err if errors else subprocess.STDOUT
        )
    app = DevApp(process, f"http://127.0.0.1:{port}", env, data_dir, log)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"orchestrator dev exited with {process.returncode}:\n{app.output()}")
        try:
            if httpx.get(f"{app.url}/healthz", timeout=2).status_code == 200:
                return app
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop_dev(app)
            raise RuntimeError(f"orchestrator dev did not become healthy:\n{app.output()}")
        time.sleep(0.1)


def stop_dev(app: DevApp) -> None:
    if app.process.poll() is None:
        app.process.send_signal(signal.SIGINT)
        try:
            app.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            app.process.kill()
            app.process.wait()


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevApp]:
    """`orchestrator dev` with no ORCH_REDIS_URL: it starts its own embedded redis-server."""
    app = start_dev(Path(tmp_path_factory.mktemp("dev")))
    try:
        yield app
    finally:
        stop_dev(app)


@pytest.fixture(scope="module")
def dev_with_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevApp]:
    """`orchestrator dev` using a redis-server this fixture starts, so other commands can share it."""
    tmp = Path(tmp_path_factory.mktemp("dev-redis"))
    with redis_server(tmp / "redis") as url:
        app = start_dev(tmp, {"ORCH_REDIS_URL": url})
        try:
            yield app
        finally:
            stop_dev(app)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()
