"""goto, fill, select, check, uncheck, click (with fallbacks) and press against the local form page."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.conftest import Env, step

FORMS = """
    name: forms
    inputs:
      customer: {type: string, required: true}
      qty: {type: integer, minimum: 1}
      password: {type: string, secret: true}
    settings:
      step_timeout: 10
    steps:
      - id: open
        action: goto
        url: "{{ site.url }}/form.html"
      - id: name
        action: fill
        selector: "#name"
        value: "{{ inputs.customer }}"
      - id: qty
        action: fill
        selector: "#qty"
        value: "{{ inputs.qty }}"
      - id: colour-by-value
        action: select
        selector: "#color"
        value: g
      - id: agree
        action: check
        selector: "#agree"
      - id: no-news
        action: uncheck
        selector: "#news"
      - id: notes
        action: fill
        selector: "#notes"
        value: "secret is {{ inputs.password }}"
      - id: save
        action: click
        selector: ["#save-missing", ".also-missing", "#save"]
      - id: read-saved
        action: extract
        selector: "#result"
        save_as: saved
      - id: read-clicks
        action: extract
        selector: "#clicks"
        save_as: clicks
      - id: colour-by-label
        action: select
        selector: "#color"
        value: Blue
      - id: submit
        action: press
        selector: "#name"
        key: Enter
      - id: read-submitted
        action: extract
        selector: "#result"
        save_as: submitted
    outputs:
      saved: "{{ captured.saved }}"
      submitted: "{{ captured.submitted }}"
"""

SECRET = "hunter2-very-secret"


@pytest.fixture(scope="module")
async def job(module_env: Env) -> dict[str, Any]:
    return await module_env.run(FORMS, {"customer": "Ada Lovelace", "qty": "3", "password": SECRET})


def test_the_form_job_completes(job: dict[str, Any]) -> None:
    assert job["status"] == "completed", job["error"]
    assert job["error"] is None
    assert all(s["status"] == "success" for s in job["steps"])
    assert job["metrics"]["steps_succeeded"] == len(job["steps"])


def test_goto_opens_the_page(job: dict[str, Any]) -> None:
    opened = step(job, "open")
    assert opened["status"] == "success"
    assert opened["action"] == "goto"
    assert opened["error"] is None


def test_fill_select_check_and_uncheck_set_the_fields(job: dict[str, Any]) -> None:
    saved = json.loads(step(job, "read-saved")["captured"]["saved"])
    assert saved["name"] == "Ada Lovelace"
    assert saved["qty"] == "3"
    assert saved["color"] == "g"
    assert saved["agree"] is True
    assert saved["news"] is False
    assert saved["via"] == "save"


def test_click_falls_back_through_the_selector_list_counting_each_miss_as_a_retry(job: dict[str, Any]) -> None:
    clicked = step(job, "save")
    assert clicked["status"] == "success"
    assert clicked["retries"] == 2
    assert step(job, "read-clicks")["captured"] == {"clicks": "1"}
    assert job["metrics"]["retries"] >= 2


def test_select_accepts_an_option_label(job: dict[str, Any]) -> None:
    assert step(job, "colour-by-label")["status"] == "success"
    assert json.loads(step(job, "read-submitted")["captured"]["submitted"])["color"] == "b"


def test_press_enter_submits_the_form(job: dict[str, Any]) -> None:
    submitted = json.loads(job["outputs"]["submitted"])
    assert submitted["via"] == "submit"
    assert submitted["name"] == "Ada Lovelace"


def test_a_secret_input_is_typed_but_never_shown(job: dict[str, Any]) -> None:
    assert job["inputs"]["password"] == "********"
    # the page got the real value: what the job read back from the page shows it masked
    notes = json.loads(step(job, "read-saved")["captured"]["saved"])["notes"]
    assert notes == "secret is ********"
    assert SECRET not in json.dumps(job)
