"""The `orchestrator` command: validate files, run a runbook and follow it."""

from __future__ import annotations

import asyncio
import re
import subprocess
import textwrap
from pathlib import Path

import httpx
import yaml

from tests.e2e.conftest import ORCHESTRATOR, RUNBOOKS, DevApp
from tests.support import env_without_orch


def orchestrator(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ORCHESTRATOR, *args],
        input=stdin,
        env=env or env_without_orch(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_validate_prints_file_and_line_of_each_problem_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        textwrap.dedent("""
        name: bad
        steps:
          - action: goto
            url: https://example.test
          - action: teleport
    """).lstrip()
    )
    good = tmp_path / "good.yaml"
    good.write_text("name: good\nsteps:\n  - {action: sleep, seconds: 1}\n")

    result = orchestrator("validate", str(bad), str(good), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(rf"^{re.escape(str(bad))}:5: .*teleport", result.stdout, re.MULTILINE), result.stdout
    assert not re.search(rf"^{re.escape(str(good))}:\d+:", result.stdout, re.MULTILINE)


def test_validate_accepts_the_shipped_runbooks() -> None:
    files = sorted(str(p) for p in RUNBOOKS.glob("*.yaml"))
    result = orchestrator("validate", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    for file in files:
        assert file in result.stdout


def test_run_follow_prints_each_step_and_exits_0(dev_with_redis: DevApp) -> None:
    result = orchestrator(
        "run", "demo-status", "--input", "settle_seconds=0", "--follow", env=dev_with_redis.env, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^job \w+ queued", result.stdout, re.MULTILINE), result.stdout
    source = yaml.safe_load((RUNBOOKS / "demo-status.yaml").read_text())
    for step in source["steps"]:
        assert re.search(rf"^step\s+{re.escape(step['id'])}\s+success", result.stdout, re.MULTILINE), (
            f"no line for step {step['id']}:\n{result.stdout}"
        )
    assert re.search(r"^result\s+completed", result.stdout, re.MULTILINE), result.stdout


def test_run_with_a_bad_input_names_it_and_exits_2(dev_with_redis: DevApp) -> None:
    result = orchestrator("run", "demo-status", "--input", "settle_seconds=-1", env=dev_with_redis.env)
    assert result.returncode == 2
    assert "settle_seconds" in result.stderr


def test_cancel_from_the_command_line_and_a_second_cancel_is_refused(dev_with_redis: DevApp) -> None:
    """A job scheduled for tomorrow (it cannot end by itself first, however loaded the machine)."""

    async def scheduled() -> str:
        async with dev_with_redis.api("operator") as http:
            made = await http.post("/api/v1/runbooks/demo-status/jobs", json={"run_at": "2099-01-01T00:00:00Z"})
        assert made.status_code == 201, made.text
        assert made.json()["status"] == "scheduled"
        return str(made.json()["id"])

    job_id = ["", asyncio.run(scheduled())]
    first = orchestrator("cancel", job_id[1], "--comment", "not today", env=dev_with_redis.env)
    assert first.returncode == 0, first.stderr
    assert f"job {job_id[1]} cancelled" in first.stdout
    again = orchestrator("cancel", job_id[1], env=dev_with_redis.env)
    assert again.returncode == 1
    assert "it is cancelled" in again.stderr


def test_users_and_tokens_are_made_stored_hashed_listed_and_revoked(dev_with_redis: DevApp) -> None:
    env = dev_with_redis.env
    added = orchestrator(
        "users", "add", "carol", "--role", "approver", "--password-stdin", env=env, stdin="carol's long passphrase\n"
    )
    assert added.returncode == 0, added.stderr
    again = orchestrator(
        "users", "add", "carol", "--role", "viewer", "--password-stdin", env=env, stdin="another passphrase\n"
    )
    assert again.returncode == 1 and "already exists" in again.stderr
    short = orchestrator("users", "add", "dave", "--role", "viewer", "--password-stdin", env=env, stdin="short\n")
    assert short.returncode == 1 and "password" in short.stderr
    users = orchestrator("users", "list", env=env)
    assert "carol\tapprover" in users.stdout and "dave" not in users.stdout

    created = orchestrator("tokens", "create", "nightly", "--role", "viewer", env=env)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("orch_") and len(token) > 40
    listed = orchestrator("tokens", "list", env=env)
    assert "nightly\tviewer\tactive" in listed.stdout and token not in listed.stdout
    database = (dev_with_redis.data_dir / "orchestrator.db").read_bytes()
    wal = dev_with_redis.data_dir / "orchestrator.db-wal"
    stored = database + (wal.read_bytes() if wal.exists() else b"")
    assert token.encode() not in stored and b"carol's long passphrase" not in stored

    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{dev_with_redis.url}/api/v1/jobs", headers=headers).status_code == 200
    assert (
        httpx.post(f"{dev_with_redis.url}/api/v1/runbooks/demo-status/jobs", headers=headers, json={}).status_code
        == 403
    )
    token_id = next(line.split("\t")[0] for line in listed.stdout.splitlines() if "\tnightly\t" in line)
    assert orchestrator("tokens", "revoke", token_id, env=env).returncode == 0
    assert httpx.get(f"{dev_with_redis.url}/api/v1/jobs", headers=headers).status_code == 401
