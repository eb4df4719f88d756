"""Fields every step accepts: timeout, retries, continue_on_error, when, screenshot; and the job's own limits."""

from __future__ import annotations

import dataclasses

import pytest

from orchestrator import jobs
from orchestrator.db.engine import reading
from orchestrator.events import read_after
from tests.integration.conftest import Env, step


async def test_a_step_timeout_overrides_the_runbook_default(env: Env) -> None:
    job = await env.run("""
        name: step-timeouts
        settings:
          step_timeout: 0.2
        steps:
          - {id: short, action: sleep, seconds: 0.5, continue_on_error: true}
          - {id: long-enough, action: sleep, seconds: 0.5, timeout: 5}
          - {id: templated, action: sleep, seconds: 0.1, timeout: "{{ 2 + 1 }}"}
    """)
    assert step(job, "short")["status"] == "failed"
    assert "time limit" in step(job, "short")["error"]
    assert step(job, "long-enough")["status"] == "success"
    assert step(job, "templated")["status"] == "success"
    assert job["status"] == "completed"


async def test_retries_repeat_a_failing_step_and_are_counted(env: Env) -> None:
    job = await env.run("""
        name: retrying
        steps:
          - {id: never-fits, action: sleep, seconds: 5, timeout: 0.2, retries: 2}
    """)
    failed = step(job, "never-fits")
    assert failed["status"] == "failed"
    assert failed["retries"] == 2
    assert job["metrics"]["retries"] == 2
    assert job["status"] == "failed"
    assert job["error"] == {"message": failed["error"], "step_id": "never-fits"}
    async with reading(env.svc.engine) as conn:
        logs = [e.data["message"] for e in await read_after(conn, 0, job_id=job["id"], types=["log"])]
    assert len([m for m in logs if "never-fits" in m and "retrying" in m]) == 2


async def test_retries_from_the_runbook_settings_let_a_late_element_be_clicked(env: Env) -> None:
    job = await env.run("""
        name: late-click
        settings:
          retries: 20
        steps:
          - {id: open, action: goto, url: "{{ site.url }}/form.html?late=2500", timeout: 10, screenshot: never}
          - {id: click-late, action: click, selector: "#late-button", timeout: 0.3}
          - {id: read, action: extract, selector: "#late-slot", save_as: slot, timeout: 5}
    """)
    assert job["status"] == "completed", job["error"]
    assert step(job, "click-late")["retries"] >= 1
    assert step(job, "read")["captured"] == {"slot": "late clicked"}


async def test_continue_on_error_lets_the_job_go_on_and_complete_with_warnings(env: Env) -> None:
    job = await env.run("""
        name: keep-going
        steps:
          - {id: broken, action: set, values: {x: "{{ captured.missing }}"}, continue_on_error: true}
          - {id: after, action: set, values: {y: 2}}
    """)
    assert job["status"] == "completed"
    assert job["warnings"] is True
    assert step(job, "broken")["status"] == "failed"
    assert "missing" in step(job, "broken")["error"]
    assert step(job, "after")["status"] == "success"
    assert job["metrics"]["steps_failed"] == 1
    assert job["metrics"]["steps_succeeded"] == 1


async def test_without_continue_on_error_a_failed_step_fails_the_job_and_later_steps_do_not_run(env: Env) -> None:
    job = await env.run("""
        name: stop-here
        steps:
          - {id: broken, action: set, values: {x: "{{ captured.missing }}"}}
          - {id: after, action: set, values: {y: 2}}
    """)
    assert job["status"] == "failed"
    assert job["error"]["step_id"] == "broken"
    assert "missing" in job["error"]["message"]
    assert step(job, "after")["status"] == "pending"
    assert job["warnings"] is False


async def test_when_false_skips_the_step(env: Env) -> None:
    job = await env.run("""
        name: conditional
        inputs:
          flag: {type: boolean, default: false}
        steps:
          - {id: skipped, action: set, values: {a: 1}, when: "{{ inputs.flag }}"}
          - {id: literal-false, action: set, values: {b: 1}, when: false}
          - {id: ran, action: set, values: {c: 1}, when: "{{ not inputs.flag }}"}
        outputs:
          seen: "{{ captured }}"
    """)
    assert job["status"] == "completed"
    assert step(job, "skipped")["status"] == "skipped"
    assert step(job, "literal-false")["status"] == "skipped"
    assert step(job, "ran")["status"] == "success"
    assert job["metrics"]["steps_skipped"] == 2
    assert job["outputs"] == {"seen": {"c": 1}}


async def test_screenshot_after_before_and_never(env: Env) -> None:
    job = await env.run("""
        name: shots
        settings:
          step_timeout: 10
        steps:
          - {id: open, action: goto, url: "{{ site.url }}/data.html"}
          - {id: quiet, action: extract, selector: "#title", save_as: title, screenshot: never}
          - {id: early, action: extract, selector: "#title", save_as: title2, screenshot: before}
    """)
    assert job["status"] == "completed", job["error"]
    by_step: dict[str, list[str]] = {}
    for a in job["artifacts"]:
        assert a["kind"] == "screenshot"
        by_step.setdefault(a["step_id"], []).append(a["name"])
    assert by_step == {"open": ["open.png"], "early": ["early-before.png"]}
    for a in job["artifacts"]:
        assert env.artifact_path(job["id"], a["id"]).read_bytes().startswith(b"\x89PNG")
    assert step(job, "open")["screenshot_url"] is not None
    assert step(job, "quiet")["screenshot_url"] is None


async def test_a_job_without_browser_actions_never_launches_a_browser(env: Env) -> None:
    job = await env.run("""
        name: no-browser
        steps:
          - {id: one, action: set, values: {a: 1}}
          - {id: two, action: sleep, seconds: 0}
          - {id: three, action: export, format: json, data: "{{ captured }}", filename: c.json}
    """)
    assert job["status"] == "completed"
    assert env.launches == [0]


async def test_a_job_with_browser_actions_uses_one_browser(env: Env) -> None:
    job = await env.run("""
        name: one-browser
        steps:
          - {id: one, action: goto, url: "{{ site.url }}/data.html"}
          - {id: two, action: goto, url: "{{ site.url }}/form.html"}
    """)
    assert job["status"] == "completed", job["error"]
    assert env.launches == [1]


async def test_a_machine_without_chromium_fails_the_step_with_how_to_fix_it(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected error in an action fails its step and the job; it does not crash the run
    (which would leave the job running until the reaper gave up on it three times)."""
    env.settings = dataclasses.replace(env.settings, browser_path=None)
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", "/nonexistent")
    job = await env.run("""
        name: no-chromium
        steps:
          - {id: open, action: goto, url: "{{ site.url }}/data.html"}
    """)
    assert job["status"] == "failed"
    assert job["attempt"] == 1
    assert "No Chromium found" in step(job, "open")["error"]
    assert job["error"]["step_id"] == "open"


async def test_the_job_time_limit_fails_the_job_and_its_running_step(env: Env) -> None:
    job = await env.run("""
        name: too-slow
        settings:
          timeout: 0.5
        steps:
          - {id: nap, action: sleep, seconds: 3, timeout: 10}
          - {id: never, action: set, values: {a: 1}}
    """)
    assert job["status"] == "failed"
    assert "time limit" in job["error"]["message"]
    assert step(job, "never")["status"] in ("pending", "cancelled", "skipped")
    # the interrupted step must not stay "running" in a finished job
    assert step(job, "nap")["status"] in ("failed", "cancelled")
    assert step(job, "nap")["finished_at"] is not None


async def test_outputs_are_computed_at_the_end(env: Env) -> None:
    job = await env.run("""
        name: outputs
        inputs:
          n: {type: integer, default: 4}
        steps:
          - {id: a, action: set, values: {double: "{{ inputs.n * 2 }}", names: ["x", "y"]}}
        outputs:
          double: "{{ captured.double }}"
          names: "{{ captured.names }}"
          text: "n={{ inputs.n }}"
          job: "{{ job.runbook }} v{{ job.version }}"
    """)
    assert job["status"] == "completed"
    assert job["outputs"] == {"double": 8, "names": ["x", "y"], "text": "n=4", "job": "outputs v1"}
    assert (await jobs.get(env.svc, job["id"]))["outputs"] == job["outputs"]
