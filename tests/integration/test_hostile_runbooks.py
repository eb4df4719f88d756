"""A hostile file in the runbooks folder (an alias bomb, a recursive alias, a folder, bad bytes) is reported
as FILE:LINE: message by `orchestrator validate` and by the app, which still starts and loads the others."""

from __future__ import annotations

import asyncio
import html
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.integration.conftest import Env, http_client
from tests.unit.test_yaml_safety import BOMB

RECURSIVE = """
name: recursive
steps: &steps
  - action: set
    values: {again: *steps}
"""
GOOD = """
name: good
steps:
  - {action: set, values: {fine: true}}
"""


def hostile_folder(folder: Path) -> dict[str, tuple[int, str]]:
    """Write one good runbook and several hostile files; return each hostile file's path: (line, words)."""
    (folder / "good.yaml").write_text(GOOD.lstrip())
    (folder / "hostile.yaml").write_text(textwrap.dedent(BOMB).lstrip())
    (folder / "recursive.yaml").write_text(RECURSIVE.lstrip())
    (folder / "folder.yaml").mkdir()
    (folder / "latin1.yaml").write_bytes("name: latin1\ntitle: caf\xe9\n".encode("latin-1"))
    return {
        str(folder / "hostile.yaml"): (9, "aliases expand the runbook"),
        str(folder / "recursive.yaml"): (4, "cannot contain itself"),
        str(folder / "folder.yaml"): (1, "cannot read the file"),
        str(folder / "latin1.yaml"): (1, "cannot read the file"),
    }


def assert_reported(problems: list[str], expected: dict[str, tuple[int, str]]) -> None:
    for file, (line, words) in expected.items():
        pattern = rf"{re.escape(file)}:{line}: .*{re.escape(words)}.*"
        assert any(re.fullmatch(pattern, p) for p in problems), f"{file}:{line} {words!r} not in {problems}"


async def test_the_app_starts_with_hostile_files_loads_the_others_and_lists_the_problems(env: Env) -> None:
    expected = hostile_folder(env.settings.runbooks_dir)
    async with asyncio.timeout(120), http_client(env.settings, role="viewer") as http:  # a guard against a hang
        listed = (await http.get("/api/v1/runbooks")).json()
        page = (await http.get("/runbooks", headers={"Accept": "text/html"})).text
        good = await http.get("/api/v1/runbooks/good")
        bomb = await http.get("/api/v1/runbooks/hostile")
    assert [r["name"] for r in listed["items"]] == ["good"]
    assert len(listed["problems"]) == len(expected), listed["problems"]
    assert_reported(listed["problems"], expected)
    assert_reported([html.unescape(shown) for shown in re.findall(r"<li><code>(.*?)</code></li>", page)], expected)
    assert good.status_code == 200 and bomb.status_code == 404


async def test_validate_prints_file_and_line_of_each_hostile_file(tmp_path: Path) -> None:
    expected = hostile_folder(tmp_path)
    files = sorted(str(p) for p in tmp_path.iterdir())
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "orchestrator.cli", "validate", *files],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,  # a guard against a hang, not a speed check
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert_reported(result.stdout.splitlines(), expected)
    assert f"{tmp_path / 'good.yaml'}: ok (good, 1 steps)" in result.stdout.splitlines()
