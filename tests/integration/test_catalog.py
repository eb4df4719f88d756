"""Runbook versions and the runbooks directory: a job keeps its version; a bad file blocks no other."""

from __future__ import annotations

import asyncio
import os
import re

import pytest

from orchestrator import jobs
from orchestrator.errors import RunbookNotFound
from orchestrator.jobs import JobRequest
from orchestrator.states import Action
from tests.integration.conftest import Env, http_client, step

V1 = """
    name: versioned
    steps:
      - {id: mark, action: set, values: {which: one}}
    outputs:
      which: "{{ captured.which }}"
"""
V2 = """
    name: versioned
    title: Second edition
    steps:
      - {id: mark, action: set, values: {which: two}}
      - {id: extra, action: set, values: {more: true}}
    outputs:
      which: "{{ captured.which }}"
"""


def bump_mtime(env: Env, name: str) -> None:
    path = env.settings.runbooks_dir / f"{name}.yaml"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


async def test_a_job_runs_the_version_it_was_created_with(env: Env) -> None:
    name = env.write(V1)
    first = await env.create(name)
    assert first["runbook_version"] == 1
    env.write(V2)
    bump_mtime(env, name)
    second = await env.create(name)
    assert second["runbook_version"] == 2
    await env.work()

    old = await jobs.get(env.svc, first["id"])
    new = await jobs.get(env.svc, second["id"])
    assert old["status"] == new["status"] == "completed"
    assert old["runbook_version"] == 1
    assert old["outputs"] == {"which": "one"}
    assert [s["id"] for s in old["steps"]] == ["mark"]
    assert new["runbook_version"] == 2
    assert new["outputs"] == {"which": "two"}
    assert step(new, "extra")["status"] == "success"


async def test_unchanged_content_keeps_its_version_number(env: Env) -> None:
    name = env.write(V1)
    await env.create(name)
    env.write(V1)
    bump_mtime(env, name)
    again = await env.create(name)
    assert again["runbook_version"] == 1


async def test_a_bad_runbook_file_does_not_stop_the_others_from_loading(env: Env) -> None:
    env.write("""
        name: good
        steps:
          - {action: set, values: {a: 1}}
    """)
    env.write("""
        name: broken
        steps:
          - action: teleport
            to: mars
    """)
    env.write("name: [unclosed\n", filename="syntax.yaml")
    await env.svc.catalog.refresh(force=True)

    assert [v.runbook.name for v in env.svc.catalog.versions()] == ["good"]
    problems = [str(p) for p in env.svc.catalog.problems]
    broken = str(env.settings.runbooks_dir / "broken.yaml")
    syntax = str(env.settings.runbooks_dir / "syntax.yaml")
    assert any(re.fullmatch(rf"{re.escape(broken)}:3: .*teleport.*", p) for p in problems), problems
    assert any(re.match(rf"{re.escape(syntax)}:\d+: ", p) for p in problems), problems

    job, created = await jobs.create(env.svc, "good", JobRequest())
    assert created and job["status"] == "queued"
    with pytest.raises(RunbookNotFound, match="broken"):
        await jobs.create(env.svc, "broken", JobRequest())


async def test_fixing_a_bad_file_loads_it(env: Env) -> None:
    env.write("""
        name: later
        steps:
          - {action: set, values: {a: 1}, bogus: 1}
    """)
    await env.svc.catalog.refresh(force=True)
    assert env.svc.catalog.versions() == []
    assert len(env.svc.catalog.problems) == 1
    env.write("""
        name: later
        steps:
          - {action: set, values: {a: 1}}
    """)
    bump_mtime(env, "later")
    await env.svc.catalog.refresh(force=True)
    assert [v.runbook.name for v in env.svc.catalog.versions()] == ["later"]
    assert env.svc.catalog.problems == []


async def test_versions_are_listed_newest_first_with_a_diff_from_the_one_before(env: Env) -> None:
    first = "name: evolving\nsteps:\n  - {id: a, action: set, values: {n: 1}}\n"
    env.write(first)
    await env.svc.catalog.refresh(force=True)
    env.write(first.replace("{n: 1}", "{n: 2}") + "  - {id: b, action: sleep, seconds: 0}\n")
    await env.svc.catalog.refresh(force=True)
    async with http_client(env.settings, role="viewer") as http:
        answer = await http.get("/api/v1/runbooks/evolving/versions")
        page = await http.get("/runbooks/evolving", headers={"Accept": "text/html"})
        missing = await http.get("/api/v1/runbooks/nothing-here/versions")
    assert answer.status_code == 200
    items = answer.json()["items"]
    assert [v["version"] for v in items] == [2, 1]
    assert items[1]["diff"] is None and items[1]["source"] == first
    diff = items[0]["diff"].splitlines()
    assert "-  - {id: a, action: set, values: {n: 1}}" in diff
    assert "+  - {id: a, action: set, values: {n: 2}}" in diff
    assert "+  - {id: b, action: sleep, seconds: 0}" in diff
    assert 'data-version="2"' in page.text and "Changes from v1" in page.text
    assert '<span class="diff-add">+  - {id: b, action: sleep, seconds: 0}</span>' in page.text
    assert missing.status_code == 404


async def test_a_job_waiting_for_approval_finishes_on_its_version_after_the_file_changed(env: Env) -> None:
    source = """
name: gated
steps:
  - {id: ask, action: approval, message: "Go?"}
  - {id: after, action: set, values: {which: "old"}}
outputs:
  which: "{{ captured.which }}"
"""
    job = await env.create(env.write(source))
    work = asyncio.create_task(env.work())
    try:
        for _ in range(300):
            if (await jobs.get(env.svc, job["id"]))["status"] == "waiting_for_approval":
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the job never asked for approval")
        env.write(source.replace('"old"', '"new"').replace("Go?", "Go now?"))  # version 2 meanwhile
        await env.svc.catalog.refresh(force=True)
        assert (await env.svc.catalog.get("gated")).number == 2
        await jobs.act(env.svc, job["id"], Action.APPROVE, "tests")
    finally:
        await asyncio.wait_for(work, 60)
    done = await jobs.get(env.svc, job["id"])
    assert done["status"] == "completed", done["error"]
    assert (done["runbook_version"], done["outputs"]) == (1, {"which": "old"})


async def test_a_queued_job_still_runs_its_version_after_the_file_was_deleted(env: Env) -> None:
    name = env.write(V1)
    job = await env.create(name)
    (env.settings.runbooks_dir / f"{name}.yaml").unlink()
    await env.svc.catalog.refresh(force=True)
    with pytest.raises(RunbookNotFound):
        await env.svc.catalog.get(name)  # no new jobs of it
    await env.work()
    done = await jobs.get(env.svc, job["id"])
    assert done["status"] == "completed", done["error"]
    assert (done["runbook_version"], done["outputs"]) == (1, {"which": "one"})
