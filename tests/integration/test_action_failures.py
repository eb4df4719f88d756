"""Every action fails clearly: a one-line error on the step that names what went wrong.

One job runs every failing step with continue_on_error, so each test checks one step's error.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.integration.conftest import Env, step

FAILURES = """
    name: failures
    settings:
      step_timeout: 0.5
      retries: 0
    steps:
      - {id: open, action: goto, url: "{{ site.url }}/data.html", timeout: 10}
      - {id: read-title, action: extract, selector: "#title", save_as: title, timeout: 10}
      - {id: report, action: download, selector: "#report", save_as: report, timeout: 10}

      - {id: goto-404, action: goto, url: "{{ site.url }}/missing.html", continue_on_error: true}
      - {id: goto-scheme, action: goto, url: "file:///etc/passwd", continue_on_error: true}
      - {id: goto-slow, action: goto, url: "{{ site.url }}/slow?seconds=3", continue_on_error: true}
      - {id: goto-template, action: goto, url: "{{ inputs.nowhere }}/x", continue_on_error: true}

      - {id: back, action: goto, url: "{{ site.url }}/data.html", timeout: 10}
      - {id: click-missing, action: click, selector: ["#nope", "#nada"], continue_on_error: true}
      - {id: fill-missing, action: fill, selector: "#nope", value: x, continue_on_error: true}
      - {id: fill-not-a-field, action: fill, selector: "#title", value: x, continue_on_error: true}
      - {id: fill-bad-type, action: fill, selector: "#title", value: "{{ ['a', 'b'] }}", continue_on_error: true}
      - {id: press-missing, action: press, selector: "#nope", key: Enter, continue_on_error: true}
      - {id: press-unknown-key, action: press, selector: "#go-later", key: NoSuchKey, continue_on_error: true}
      - {id: check-missing, action: check, selector: "#nope", continue_on_error: true}
      - {id: uncheck-missing, action: uncheck, selector: "#nope", continue_on_error: true}
      - {id: select-missing, action: select, selector: "#nope", value: x, continue_on_error: true}
      - {id: wait-missing, action: wait_for, selector: "#never", continue_on_error: true}
      - {id: wait-url, action: wait_for, url: "**/never.html", continue_on_error: true}
      - {id: extract-missing, action: extract, selector: "#nope", save_as: nope, continue_on_error: true}
      - {id: extract-template, action: extract, selector: "{{ captured.nothing }}", save_as: nope,
         continue_on_error: true}
      - {id: assert-text, action: assert, selector: "#title", text: Goodbye, continue_on_error: true}
      - {id: assert-url, action: assert, url: /elsewhere.html, continue_on_error: true}
      - {id: assert-missing, action: assert, selector: "#nope", continue_on_error: true}
      - {id: screenshot-template, action: screenshot, name: "{{ captured.nothing }}", continue_on_error: true}
      - {id: download-missing, action: download, selector: "#nope", continue_on_error: true}
      - {id: download-nothing, action: download, selector: "#no-download", continue_on_error: true}
      - {id: upload-missing, action: upload, selector: "#nope", file: "{{ captured.report }}", continue_on_error: true}
      - {id: upload-not-a-file, action: upload, selector: "#file", file: just text, continue_on_error: true}
      - {id: export-not-rows, action: export, format: csv, data: "{{ captured.title }}", filename: t.csv,
         continue_on_error: true}
      - {id: set-template, action: set, values: {x: "{{ captured.nothing }}"}, continue_on_error: true}
      - {id: sleep-too-long, action: sleep, seconds: 5, continue_on_error: true}
      - {id: sleep-bad-type, action: sleep, seconds: "{{ 'soon' }}", continue_on_error: true}

      - {id: form, action: goto, url: "{{ site.url }}/form.html", timeout: 10}
      - {id: check-not-a-box, action: check, selector: "#name", continue_on_error: true}
      - {id: select-no-option, action: select, selector: "#color", value: purple, continue_on_error: true}
      - {id: last, action: set, values: {done: true}}
"""

TIMED_OUT = r"(within 0\.5 s|500 ?ms|time limit|timed? ?out)"

#: step id -> what its error must say (regular expressions, case-insensitive)
EXPECTED: dict[str, list[str]] = {
    "goto-404": [r"missing\.html", r"404"],
    "goto-scheme": [r"file:///etc/passwd", r"only http and https"],
    "goto-slow": [TIMED_OUT],
    "goto-template": [r"nowhere"],
    "click-missing": [r"#nope", r"#nada"],
    "fill-missing": [r"#nope"],
    "fill-not-a-field": [r"fill"],
    "fill-bad-type": [r"value"],
    "press-missing": [r"#nope"],
    "press-unknown-key": [r"NoSuchKey"],
    "check-missing": [r"#nope"],
    "uncheck-missing": [r"#nope"],
    "select-missing": [r"#nope"],
    "wait-missing": [r"#never"],
    "wait-url": [r"never\.html"],
    "extract-missing": [r"#nope"],
    "extract-template": [r"nothing"],
    "assert-text": [r"#title", r"Goodbye", r"Hello invoices"],
    "assert-url": [r"/elsewhere\.html", r"data\.html"],
    "assert-missing": [r"#nope"],
    "screenshot-template": [r"nothing"],
    "download-missing": [r"#nope"],
    "download-nothing": [r"#no-download", r"download"],
    "upload-missing": [r"#nope"],
    "upload-not-a-file": [r"file"],
    "export-not-rows": [r"csv", r"data"],
    "set-template": [r"nothing"],
    "sleep-too-long": [r"\b5 s", TIMED_OUT],
    "sleep-bad-type": [r"seconds"],
    "check-not-a-box": [r"checkbox"],
    "select-no-option": [r"purple"],
}


@pytest.fixture(scope="module")
async def job(module_env: Env) -> dict[str, Any]:
    return await module_env.run(FAILURES)


@pytest.mark.parametrize("step_id", sorted(EXPECTED))
def test_a_failing_step_says_what_failed(job: dict[str, Any], step_id: str) -> None:
    failed = step(job, step_id)
    assert failed["status"] == "failed"
    error = failed["error"]
    assert isinstance(error, str) and error.strip()
    assert "\n" not in error, "an error users see is one line"
    for pattern in EXPECTED[step_id]:
        assert re.search(pattern, error, re.IGNORECASE), f"{step_id}: {error!r} does not match {pattern!r}"


def test_failures_allowed_by_continue_on_error_leave_the_job_completed_with_warnings(job: dict[str, Any]) -> None:
    assert job["status"] == "completed"
    assert job["warnings"] is True
    assert job["error"] is None
    assert job["metrics"]["steps_failed"] == sum(1 for s in job["steps"] if s["status"] == "failed")
    assert job["metrics"]["steps_failed"] >= len(EXPECTED) - 1
    assert step(job, "last")["status"] == "success"
