"""The API keeps the promises of its document: schemathesis with every check finds nothing, 405 names the
methods, each runbook's inputs are a JSON Schema a client can build valid jobs from, and a job says
which actions it accepts now."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import jsonschema

from orchestrator import jobs
from orchestrator.states import Action
from tests.integration.conftest import Env, bearer, http_client, live_server, to_waiting
from tests.support import schemathesis_all_checks

TYPED = """
name: typed
inputs:
  customer: {type: string, required: true}
  count: {type: integer, minimum: 1, maximum: 10}
  ratio: {type: number, minimum: 0}
  express: {type: boolean, default: false}
  mode: {type: string, enum: [fast, careful], default: fast}
  account: {type: string, pattern: "[A-Z]{2}-[0-9]+"}
  rows: {type: records}
  pin: {type: string, secret: true}
steps:
  - {id: one, action: set, values: {a: 1}}
  - {id: out, action: export, format: json, data: "{{ captured }}", filename: out.json}
"""


async def test_schemathesis_with_every_check_finds_nothing(env: Env, tmp_path: Path) -> None:
    """Against a runbook with every kind of input (the app as `make run` starts it: tests/e2e/test_api_contract.py)."""
    env.write(TYPED)
    await env.create("typed", {"customer": "ACME"})  # a job for the reads to find, with a JSON file to download
    await env.work()
    headers = await bearer(env.settings, "admin")
    async with live_server(env.settings) as url:
        await asyncio.to_thread(schemathesis_all_checks, url, headers["Authorization"], tmp_path)


async def test_a_method_a_path_does_not_serve_is_405_with_allow(env: Env) -> None:
    async with http_client(env.settings) as http:
        trace = await http.request("TRACE", "/api/v1/schedules")
        assert trace.status_code == 405
        assert trace.headers["allow"] == "GET, HEAD, POST"  # both routes of the path
        frame = await http.post("/api/v1/jobs/some-job/frame")  # not an action: the frame's route answers
        assert frame.status_code == 405 and frame.headers["allow"] == "GET, HEAD"
        put = await http.put("/api/v1/jobs/some-job")
        assert put.status_code == 405 and put.headers["allow"] == "GET, HEAD"
        assert put.json()["error"]


def _valid_inputs(schema: dict[str, Any]) -> dict[str, Any]:
    """The simplest inputs the schema takes: each required input with a value of its first choice."""
    samples = {"string": "ACME", "integer": 3, "number": 0.5, "boolean": True, "array": [{"a": 1}]}
    inputs = {}
    for name in schema.get("required", []):
        prop = schema["properties"][name]
        first = prop.get("anyOf", [prop])[0]
        inputs[name] = first["enum"][0] if "enum" in first else samples[first["type"]]
    return inputs


async def test_each_runbook_publishes_the_json_schema_of_its_inputs(env: Env) -> None:
    env.write(TYPED)
    async with http_client(env.settings) as http:
        answer = await http.get("/api/v1/runbooks/typed/schema")
        assert answer.status_code == 200
        schema = answer.json()
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["required"] == ["customer"] and schema["additionalProperties"] is False
        assert schema["properties"]["pin"]["writeOnly"] is True and "default" not in schema["properties"]["pin"]
        document = (await http.get("/openapi.json")).json()
        assert "/api/v1/runbooks/typed/jobs" in document["paths"]
        assert document["components"]["schemas"]["Inputs.typed"]["required"] == ["customer"]

        validator = jsonschema.Draft202012Validator(schema)
        good = {**_valid_inputs(schema), "count": 4, "mode": "careful", "account": "DE-42", "rows": [{"n": 1}]}
        assert not list(validator.iter_errors(good))
        made = await http.post("/api/v1/runbooks/typed/jobs", json={"inputs": good})
        assert made.status_code == 201, made.text

        for bad, field in (({"count": 11}, "count"), ({"account": "de-42"}, "account"), ({"colour": "red"}, "colour")):
            inputs = {**good, **bad}
            assert list(validator.iter_errors(inputs))  # the schema refuses it, and so does the API
            refused = await http.post("/api/v1/runbooks/typed/jobs", json={"inputs": inputs, "data": {"x": 1}})
            assert refused.status_code == 422, refused.text
            assert set(refused.json()["fields"]) == {field}
        missing = await http.post("/api/v1/runbooks/typed/jobs", json={"inputs": {"pin": "s3cret-value"}})
        assert missing.status_code == 422 and set(missing.json()["fields"]) == {"customer"}
        assert "s3cret-value" not in missing.text
        assert (await http.get("/api/v1/runbooks/nope/schema")).status_code == 404


async def test_a_job_says_which_actions_it_accepts_now(env: Env) -> None:
    env.write(TYPED)
    queued = await env.create("typed", {"customer": "ACME"})
    assert queued["allowed_actions"] == ["cancel"]
    waiting = await env.create("typed", {"customer": "ACME"})
    await to_waiting(env, waiting["id"])
    async with http_client(env.settings) as http:
        shown = (await http.get(f"/api/v1/jobs/{waiting['id']}")).json()
        assert shown["status"] == "waiting_for_approval"
        assert shown["allowed_actions"] == ["approve", "reject", "cancel"]
        listed = (await http.get("/api/v1/jobs?status=waiting_for_approval")).json()["items"]
        assert [j["allowed_actions"] for j in listed] == [["approve", "reject", "cancel"]]
    finished = await jobs.act(env.svc, queued["id"], Action.CANCEL, "tester")
    assert finished["status"] == "cancelled" and finished["allowed_actions"] == []
    async with http_client(env.settings, role="operator") as http:
        report = {"process": "bot", "source": "uipath", "external_id": "r-1", "status": "running"}
        reported = (await http.post("/api/v1/ingest/jobs", json=report)).json()
        assert reported["status"] == "running" and reported["allowed_actions"] == []  # another tool's run


async def test_the_runbook_catalogue_is_in_the_document_only_for_who_may_see_runbooks(env: Env) -> None:
    env.write(TYPED)
    async with http_client(env.settings, role=None) as anonymous:
        public = (await anonymous.get("/openapi.json")).json()
        assert (await anonymous.get("/api/v1/runbooks")).status_code == 401
    assert "/api/v1/runbooks/typed/jobs" not in public["paths"]
    assert "Inputs.typed" not in public["components"]["schemas"]
    assert "/api/v1/runbooks/{name}/jobs" in public["paths"]
    async with http_client(env.settings, role="viewer") as viewer:
        signed_in = (await viewer.get("/openapi.json")).json()
    assert "/api/v1/runbooks/typed/jobs" in signed_in["paths"]


async def test_a_secret_input_publishes_none_of_its_allowed_values(env: Env) -> None:
    env.write(
        """
        name: guarded
        inputs:
          pin: {type: string, secret: true, enum: ["4711", "9999"]}
          code: {type: string, secret: true, pattern: "[A-Z]{3}-[0-9]{4}"}
        steps:
          - {id: one, action: set, values: {a: 1}}
        """
    )
    async with http_client(env.settings, role="viewer") as http:
        text = (await http.get("/api/v1/runbooks/guarded/schema")).text
    assert "4711" not in text and "9999" not in text and "A-Z" not in text


async def test_reported_records_keep_their_positions_and_a_repeated_sequence_is_named(env: Env) -> None:
    async with http_client(env.settings, role="operator") as http:
        same = {"record_id": "A-1", "status": "success"}
        twice = {"process": "bot", "source": "uipath", "external_id": "r-2", "status": "success"}
        made = await http.post("/api/v1/ingest/jobs", json={**twice, "records": [same, same]})
        assert made.status_code == 201, made.text
        assert made.json()["record_counts"]["total"] == 2  # sequences 1 and 2, by position
        clash = [{**same, "sequence": 5}, {"record_id": "B-2", "status": "failed", "sequence": 5}]
        refused = await http.patch(f"/api/v1/ingest/jobs/{made.json()['id']}", json={"records": clash})
        assert refused.status_code == 422, refused.text
        assert refused.json()["fields"] == {
            "records[1].sequence": "must be different for each record: records[0] has sequence 5 too"
        }
