"""Jobs created from a form with files: a file input, and records from an uploaded CSV or JSON file."""

from __future__ import annotations

import json

from orchestrator import jobs
from tests.integration.conftest import Env, http_client

RUNBOOK = """
name: from-files
inputs:
  batch: {type: string, required: true}
  rows: {type: records, required: true}
  scan: {type: file}
steps:
  - id: each
    action: for_each
    items: "{{ inputs.rows }}"
    record_id: "{{ record.id }}"
    steps:
      - {id: note, action: set, values: {last: "{{ record.amount }}"}}
outputs:
  batch: "{{ inputs.batch }}"
"""
CSV = '\ufeffid,amount,vendor\nA-1,10,Acme\nA-2,20,"Initech, Inc."\n\nA-3,30,Umbrella\n'


async def test_a_form_with_a_csv_of_records_and_a_file_creates_and_runs_the_job(env: Env) -> None:
    env.write(RUNBOOK)
    async with http_client(env.settings, role="operator") as http:
        answer = await http.post(
            "/api/v1/runbooks/from-files/jobs",
            data={"batch": "B-7", "priority": "high"},
            files={
                "rows": ("invoices.csv", CSV.encode(), "text/csv"),
                "scan": ("scan.pdf", b"%PDF-1.4 x", "application/pdf"),
            },
        )
        assert answer.status_code == 201, answer.text
        job = answer.json()
        assert job["priority"] == "high"
        assert job["inputs"]["rows"] == [
            {"id": "A-1", "amount": "10", "vendor": "Acme"},
            {"id": "A-2", "amount": "20", "vendor": "Initech, Inc."},
            {"id": "A-3", "amount": "30", "vendor": "Umbrella"},
        ]
        (attachment,) = [a for a in job["artifacts"] if a["kind"] == "attachment"]
        assert (attachment["name"], attachment["size"]) == ("scan.pdf", 10)
        assert job["inputs"]["scan"]["artifact_id"] == attachment["id"]
        as_json = await http.post(
            "/api/v1/runbooks/from-files/jobs",
            data={"inputs": json.dumps({"batch": "B-8"})},
            files={"rows": ("rows.json", json.dumps([{"id": "J-1", "amount": 5}]).encode(), "application/json")},
        )
        assert as_json.status_code == 201, as_json.text
        assert as_json.json()["inputs"]["rows"] == [{"id": "J-1", "amount": 5}]
    await env.work()
    done = await jobs.get(env.svc, job["id"])
    assert done["status"] == "completed", done["error"]
    assert [r["record_id"] for r in done["records"]] == ["A-1", "A-2", "A-3"]


async def test_a_bad_csv_is_refused_naming_the_field_and_the_line(env: Env) -> None:
    env.write(RUNBOOK)
    async with http_client(env.settings, role="operator") as http:
        ragged = await http.post(
            "/api/v1/runbooks/from-files/jobs",
            data={"batch": "B"},
            files={"rows": ("bad.csv", b"id,amount\nA-1,10\nA-2\n", "text/csv")},
        )
        assert ragged.status_code == 422
        assert ragged.json()["fields"]["rows"] == "bad.csv line 3: 1 cells where the header has 2"
        latin = await http.post(
            "/api/v1/runbooks/from-files/jobs",
            data={"batch": "B"},
            files={"rows": ("latin.csv", "id\nK\xf6ln\n".encode("latin-1"), "text/csv")},
        )
        assert latin.status_code == 422 and "not UTF-8" in latin.json()["fields"]["rows"]
        not_json = await http.post(
            "/api/v1/runbooks/from-files/jobs",
            data={"batch": "B", "inputs": "{oops"},
            files={"rows": ("r.csv", b"id\n1\n", "text/csv")},
        )
        assert not_json.status_code == 422 and "inputs" in not_json.json()["fields"]
        listed = (await http.get("/api/v1/jobs")).json()
        assert listed["total"] == 0
