"""wait_for, extract, assert, screenshot, download, upload, export, set and sleep against the local site."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest

from tests.integration.conftest import Env, step
from tests.support import SITE_DIR

PAGE = """
    name: page-work
    settings:
      step_timeout: 10
    steps:
      - id: open
        action: goto
        url: "{{ site.url }}/data.html"
      - id: wait-late
        action: wait_for
        selector: "#late"
      - id: wait-spinner-gone
        action: wait_for
        selector: "#spinner"
        state: hidden
      - id: title
        action: extract
        selector: "#title"
        save_as: title
      - id: link-kind
        action: extract
        selector: "#home"
        attribute: data-kind
        save_as: kind
      - id: items
        action: extract
        selector: "#items li"
        all: true
        save_as: words
      - id: people
        action: extract
        selector: "#people"
        table: true
        save_as: people
      - id: check-title
        action: assert
        selector: "#title"
        text: invoices
      - id: check-url
        action: assert
        url: "/data.html"
      - id: check-url-pattern
        action: assert
        url: "http://127.0.0.1:*/data.html"
      - id: check-element
        action: assert
        selector: "#people tbody tr"
      - id: shot
        action: screenshot
        name: people-table
      - id: shot-full
        action: screenshot
        full_page: true
      - id: report
        action: download
        selector: "#report"
        save_as: report
      - id: export-csv
        action: export
        format: csv
        data: "{{ captured.people }}"
        filename: people.csv
      - id: export-json
        action: export
        format: json
        data: "{{ {'words': captured.words, 'count': captured.words | length} }}"
        filename: summary
      - id: leave
        action: click
        selector: "#go-later"
      - id: wait-form
        action: wait_for
        url: "**/form.html?from=data"
      - id: open-upload
        action: goto
        url: "{{ site.url }}/upload.html"
      - id: upload
        action: upload
        selector: "#file"
        file: "{{ captured.report }}"
      - id: uploaded
        action: extract
        selector: "#uploaded"
        save_as: uploaded
      - id: remember
        action: set
        values:
          people_count: "{{ captured.people | length }}"
          first: "{{ captured.people[0].Name }}"
          label: "{{ captured.title }} ({{ captured.words | length }})"
      - id: pause
        action: sleep
        seconds: 0.2
    outputs:
      people_count: "{{ captured.people_count }}"
      label: "{{ captured.label }}"
      first: "{{ captured.first }}"
"""

REPORT = (SITE_DIR / "files" / "report.csv").read_bytes()


@pytest.fixture(scope="module")
async def job(module_env: Env) -> dict[str, Any]:
    return await module_env.run(PAGE)


def artifact(job: dict[str, Any], name: str) -> dict[str, Any]:
    found = [a for a in job["artifacts"] if a["name"] == name]
    assert found, f"no artifact {name!r} in {[a['name'] for a in job['artifacts']]}"
    return found[0]


def test_the_page_job_completes(job: dict[str, Any]) -> None:
    failed = {s["id"]: s["error"] for s in job["steps"] if s["status"] != "success"}
    assert job["status"] == "completed", failed
    assert failed == {}


def test_wait_for_a_selector_that_appears_late_and_one_that_hides(job: dict[str, Any]) -> None:
    assert step(job, "wait-late")["status"] == "success"
    assert step(job, "wait-spinner-gone")["status"] == "success"


def test_wait_for_a_url_the_page_reaches_later(job: dict[str, Any]) -> None:
    assert step(job, "wait-form")["status"] == "success"


def test_extract_text_and_attribute(job: dict[str, Any]) -> None:
    assert step(job, "title")["captured"] == {"title": "Hello invoices"}
    assert step(job, "link-kind")["captured"] == {"kind": "internal"}


def test_extract_all_gives_a_list(job: dict[str, Any]) -> None:
    assert step(job, "items")["captured"] == {"words": ["alpha", "beta", "gamma"]}


def test_extract_table_gives_a_list_of_dicts(job: dict[str, Any]) -> None:
    assert step(job, "people")["captured"] == {"people": [{"Name": "Ada", "Age": "36"}, {"Name": "Grace", "Age": "45"}]}


def test_assert_text_url_and_selector_pass_when_they_hold(job: dict[str, Any]) -> None:
    for step_id in ("check-title", "check-url", "check-url-pattern", "check-element"):
        assert step(job, step_id)["status"] == "success", step(job, step_id)["error"]


def test_screenshot_is_a_png_artifact_on_disk(module_env: Env, job: dict[str, Any]) -> None:
    shot = artifact(job, "people-table.png")
    assert shot["kind"] == "screenshot"
    assert shot["mime_type"] == "image/png"
    assert shot["url"] == f"/api/v1/jobs/{job['id']}/artifacts/{shot['id']}"
    content = module_env.artifact_path(job["id"], shot["id"]).read_bytes()
    assert content.startswith(b"\x89PNG\r\n\x1a\n")
    assert shot["size"] == len(content)
    full = artifact(job, "shot-full.png")
    assert module_env.artifact_path(job["id"], full["id"]).read_bytes().startswith(b"\x89PNG")


def test_download_saves_the_served_file_as_an_artifact(module_env: Env, job: dict[str, Any]) -> None:
    downloaded = artifact(job, "report.csv")
    assert downloaded["kind"] == "download"
    assert module_env.artifact_path(job["id"], downloaded["id"]).read_bytes() == REPORT
    assert downloaded["size"] == len(REPORT)
    saved = step(job, "report")["captured"]["report"]  # save_as keeps a reference to the file
    assert saved["artifact_id"] == downloaded["id"]
    assert saved["name"] == "report.csv"


def test_upload_sets_the_file_input_from_a_file_downloaded_earlier(job: dict[str, Any]) -> None:
    assert step(job, "upload")["status"] == "success"
    name, size, text = step(job, "uploaded")["captured"]["uploaded"].split("|", 2)
    assert name == "report.csv"
    assert int(size) == len(REPORT)
    assert text.strip() == REPORT.decode().strip()


def test_export_csv_writes_the_rows(module_env: Env, job: dict[str, Any]) -> None:
    exported = artifact(job, "people.csv")
    assert exported["kind"] == "export"
    assert exported["mime_type"].startswith("text/csv")
    text = module_env.artifact_path(job["id"], exported["id"]).read_text()
    assert list(csv.DictReader(io.StringIO(text))) == [{"Name": "Ada", "Age": "36"}, {"Name": "Grace", "Age": "45"}]


def test_export_json_writes_the_data_and_adds_the_extension(module_env: Env, job: dict[str, Any]) -> None:
    exported = artifact(job, "summary.json")
    assert exported["kind"] == "export"
    content = json.loads(module_env.artifact_path(job["id"], exported["id"]).read_text())
    assert content == {"words": ["alpha", "beta", "gamma"], "count": 3}


def test_set_saves_typed_values_for_later_steps_and_outputs(job: dict[str, Any]) -> None:
    assert step(job, "remember")["captured"] == {"people_count": 2, "first": "Ada", "label": "Hello invoices (3)"}
    assert job["outputs"] == {"people_count": 2, "label": "Hello invoices (3)", "first": "Ada"}


def test_sleep_succeeds(job: dict[str, Any]) -> None:
    slept = step(job, "pause")
    assert slept["status"] == "success"
    assert slept["duration_s"] >= 0.2
