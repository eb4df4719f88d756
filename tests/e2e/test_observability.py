"""Logs and traces of `orchestrator dev` (web, worker and scheduler processes, as `make run` starts them)
with ORCH_LOG_FORMAT=json and ORCH_OTEL_ENDPOINT at a real OTLP/HTTP receiver: a job with a secret input
and three steps, one of them failing after a retry, runs to its end, then the app stops (the processes
send their last spans as they stop). Every line on standard error is JSON and names the job, step,
attempt and worker it is about; the job is one trace; the secret is in neither."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import start_dev, stop_dev
from tests.otlp import Receiver, attributes, otlp_receiver

SECRET = "Sw0rdfish-" + secrets.token_hex(6)
RUNBOOK = """
name: observed
inputs:
  password: {type: string, secret: true, required: true}
steps:
  - id: remember
    action: set
    values: {token: "{{ inputs.password }}"}
  - id: flaky
    action: sleep
    seconds: 30
    timeout: 0.2
    retries: 1
    continue_on_error: true
  - id: last
    action: set
    values: {done: true}
outputs:
  missing: "{{ captured[inputs.password] }}"
"""
STEP_KEYS = {
    "orchestrator.step.id",
    "orchestrator.step.action",
    "orchestrator.step.status",
    "orchestrator.step.retries",
}


@dataclass
class Observed:
    job: dict[str, Any]
    errors: str  # everything the app's processes wrote to standard error
    output: str  # and to standard output
    receiver: Receiver


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    tmp = Path(tmp_path_factory.mktemp("observed"))
    (tmp / "runbooks").mkdir()
    (tmp / "runbooks" / "observed.yaml").write_text(RUNBOOK)
    with otlp_receiver() as receiver:
        settings = {
            "ORCH_LOG_FORMAT": "json",
            "ORCH_OTEL_ENDPOINT": receiver.url,
            "ORCH_RUNBOOKS_DIR": str(tmp / "runbooks"),
        }
        app = start_dev(tmp, settings, errors=tmp / "errors.log")
        try:
            with httpx.Client(base_url=app.url, timeout=30, headers={"Authorization": f"Bearer {app.token()}"}) as api:
                made = api.post("/api/v1/runbooks/observed/jobs", json={"inputs": {"password": SECRET}})
                assert made.status_code == 201, made.text
                deadline = time.monotonic() + 90  # a guard against a hung run, not a speed check
                while (job := api.get(f"/api/v1/jobs/{made.json()['id']}").json())["status"] not in (
                    "completed",
                    "failed",
                ):
                    assert time.monotonic() < deadline, job
                    time.sleep(0.2)
        finally:
            stop_dev(app)
        yield Observed(job, (tmp / "errors.log").read_text(), app.output(), receiver)


def test_every_line_on_standard_error_is_json_naming_its_job_step_attempt_and_worker(observed: Observed) -> None:
    job = observed.job
    assert job["status"] == "failed" and [s["status"] for s in job["steps"]] == ["success", "failed", "success"]
    lines = [line for line in observed.errors.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not JSON: {line!r}")
    assert all({"ts", "level", "logger", "msg"} <= set(p) and p["ts"].endswith("Z") for p in parsed)
    loggers = {p["logger"] for p in parsed}
    assert {"uvicorn.error", "uvicorn.access", "arq.worker"} <= loggers  # the servers' own lines, in our format
    ours = [p for p in parsed if p.get("job_id") == job["id"]]
    run_lines = [p["msg"] for p in ours if "step_id" not in p]
    assert run_lines[0] == f"job {job['id']} of observed v{job['runbook_version']}: attempt 1 started"
    assert run_lines[-1].startswith(f"job {job['id']} failed in ")
    worker = next(p["worker"] for p in parsed if p["logger"] == "arq.worker")
    assert all(p["attempt"] == 1 and p["worker"] == worker for p in ours)
    assert worker == job["robot"]  # the worker name of the job object: host:pid
    [step_line] = [p for p in ours if "step_id" in p]
    assert step_line["step_id"] == "flaky" and step_line["level"] == "WARNING"
    assert step_line["msg"] == "step flaky failed after 1 retries: Sleeping 30 s would exceed the step's time limit."
    assert SECRET not in observed.errors and SECRET not in observed.output


def test_the_job_is_one_trace_linked_to_its_enqueue_without_the_secret(observed: Observed) -> None:
    job = observed.job
    spans = observed.receiver.spans()
    assert observed.receiver.refused == []
    enqueues = [
        (svc, s)
        for svc, s in spans
        if attributes(s).get("orchestrator.job.id") == job["id"] and s.name.startswith("enqueue")
    ]
    [(enqueue_service, enqueue)] = enqueues
    assert enqueue_service == "orchestrator-web" and enqueue.name == "enqueue observed"
    [(run_service, run)] = [(svc, s) for svc, s in spans if s.name == "run observed"]
    assert run_service == "orchestrator-worker"
    assert attributes(run) == {
        "orchestrator.job.id": job["id"],
        "orchestrator.runbook": "observed",
        "orchestrator.runbook.version": job["runbook_version"],
        "orchestrator.job.attempt": 1,
        "orchestrator.job.status": "failed",
    }
    assert run.status.code == 2 and "The outputs could not be computed" in run.status.message  # ERROR
    assert "********" in run.status.message  # the secret the template error named, masked
    [link] = run.links
    assert (link.trace_id, link.span_id) == (enqueue.trace_id, enqueue.span_id)
    steps = [(svc, s) for svc, s in spans if s.trace_id == run.trace_id and s.parent_span_id == run.span_id]
    assert {svc for svc, _ in steps} == {"orchestrator-worker"}
    found = [attributes(s) for _, s in steps]
    assert all(set(a) == STEP_KEYS for a in found)  # no field values
    assert [
        (a["orchestrator.step.id"], a["orchestrator.step.status"], a["orchestrator.step.retries"]) for a in found
    ] == [
        ("remember", "success", 0),
        ("flaky", "failed", 1),
        ("last", "success", 0),
    ]
    assert [s.status.code for _, s in steps] == [0, 2, 0]
    in_trace = {s.span_id for _, s in spans if s.trace_id == run.trace_id}
    assert in_trace == {run.span_id} | {s.span_id for _, s in steps}  # the run and its steps, nothing else
    assert SECRET.encode() not in observed.receiver.raw()
