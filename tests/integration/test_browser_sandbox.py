"""The Chromium of a real job (issue 16): sandboxed when the worker is not root, and started without the
worker's secrets in its environment. A worker process runs as an unprivileged user (`nobody` when the tests
run as root) on PostgreSQL; the test reads /proc of the browser processes it started."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from orchestrator.config import Settings
from orchestrator.dev import scratch_postgres
from tests.integration.conftest import open_env, until
from tests.support import env_without_orch

NOBODY = 65534
WAITING = """
name: waiting
steps:
  - {id: open, action: goto, url: "{{ site.url }}/form.html"}
  - {id: hold, action: approval, message: "Hold the browser open."}
"""
SECRETS = {
    "ORCH_SECRET_KEY": "sandbox-test-secret-key-0123456789",
    "AWS_SECRET_ACCESS_KEY": "sandbox-test-aws-secret-0123456789",
    "AWS_ACCESS_KEY_ID": "AKIASANDBOXTEST0123",
}


async def test_a_jobs_chromium_is_sandboxed_and_gets_none_of_the_workers_secrets(
    settings: Settings, site_url: str
) -> None:
    with shared_folder() as folder:
        (folder / "runbooks").mkdir(mode=0o755)
        async with scratch_postgres() as database_url:
            configured = replace(
                settings,
                database_url=database_url,
                data_dir=folder / "data",
                runbooks_dir=folder / "runbooks",
                secret_key=SECRETS["ORCH_SECRET_KEY"],
            )
            async with open_env(configured, site_url) as env:
                job = await env.create(env.write(WAITING))
                environ = {**env_without_orch(), **configured.environment(), **SECRETS, "HOME": str(folder)}
                with unprivileged_worker(environ) as worker:
                    await until(env, job["id"], "waiting_for_approval")
                    browsers = chromium_processes(worker.pid)
                    [main] = [pid for pid in browsers if "--type=" not in cmdline(pid)]  # its helpers have a --type
                    renderers = [pid for pid in browsers if "--type=renderer" in cmdline(pid)]
                    assert renderers, [cmdline(pid)[:60] for pid in browsers]
                    assert "PATH" in environment(main), environment(main)  # a real environment, read
                    secrets = {**SECRETS, "ORCH_DATABASE_URL": database_url, "ORCH_REDIS_URL": settings.redis}
                    for pid in browsers:
                        variables = environment(pid)
                        leaked = {k for k, v in secrets.items() if k in variables or v in variables.values()}
                        assert not leaked, (cmdline(pid)[:60], leaked)
                        assert "--no-sandbox" not in cmdline(pid).split(" "), cmdline(pid)
                    assert [seccomp(pid) for pid in renderers] == ["2"] * len(renderers)  # page code is filtered


@contextlib.contextmanager
def shared_folder() -> Iterator[Path]:
    """A folder the unprivileged worker can write (the data directory, Chromium's HOME)."""
    folder = Path(tempfile.mkdtemp(prefix="orch-sandbox-"))
    folder.chmod(0o777)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def unprivileged_worker(environ: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """`orchestrator worker` as `nobody` when the tests run as root, else as the tests' own user."""
    command = [sys.executable, "-m", "orchestrator.cli", "worker"]
    shim = Path(environ["HOME"]) / "shim"
    process = subprocess.Popen(
        as_nobody(command, shim) if os.geteuid() == 0 else command,
        env=environ,
        cwd=environ["HOME"],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        stragglers = chromium_processes(process.pid)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        for pid in stragglers:  # Playwright starts Chromium in a process group of its own
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def as_nobody(command: list[str], shim: Path) -> list[str]:
    """`command` run as `nobody` (setpriv). An interpreter under a folder only root may enter (pyenv's under
    /root) is made reachable in a mount namespace of the command's own: a 0755 folder with a bind mount of
    the one entry needed is mounted over the closed folder. Nothing changes outside that namespace."""
    drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--", *command]
    closed = [p for p in Path(os.path.realpath(sys.executable)).parents if not p.stat().st_mode & 0o001]
    if not closed:
        return drop
    folder = closed[0]
    entry = Path(os.path.realpath(sys.executable)).relative_to(folder).parts[0]
    (shim / entry).mkdir(parents=True)
    shim.chmod(0o755)
    mounts = [["mount", "--bind", str(folder / entry), str(shim / entry)], ["mount", "--rbind", str(shim), str(folder)]]
    script = " && ".join([*(shlex.join(m) for m in mounts), "exec " + shlex.join(drop)])
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]


def chromium_processes(root: int) -> list[int]:
    """The Chromium processes among `root`'s descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    found, queue = [], [root]
    while queue:
        pid = queue.pop()
        queue += children.get(pid, [])
        if pid != root and "chrom" in Path(cmdline(pid).split(" ")[0]).name:
            found.append(pid)
    return found


def cmdline(pid: int) -> str:
    """The process's command line, words joined by spaces (Chromium rewrites its children's into one)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").replace("\0", " ").strip()
    except OSError:
        return ""


def environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def seccomp(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Seccomp:"):
            return line.split()[1]
    return ""
