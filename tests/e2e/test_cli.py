"""The `orchestrator` command: validate files, run a runbook and follow it."""

from __future__ import annotations

import re
import subprocess
import textwrap
from pathlib import Path

import yaml

from tests.e2e.conftest import ORCHESTRATOR, RUNBOOKS, DevApp
from tests.support import env_without_orch


def orchestrator(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ORCHESTRATOR, *args],
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
    created = orchestrator("run", "demo-status", "--input", "settle_seconds=30", env=dev_with_redis.env)
    job_id = re.search(r"^job (\w+) ", created.stdout, re.MULTILINE)
    assert job_id, created.stdout + created.stderr
    first = orchestrator("cancel", job_id[1], "--comment", "not today", env=dev_with_redis.env)
    assert first.returncode == 0, first.stderr
    assert f"job {job_id[1]} cancelled" in first.stdout
    again = orchestrator("cancel", job_id[1], env=dev_with_redis.env)
    assert again.returncode == 1
    assert "it is cancelled" in again.stderr
