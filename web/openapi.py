"""/openapi.json: every /api/v1 route with its parameters, request bodies and answers, and /docs, which
renders it with Swagger UI served from this app (the `swagger-ui-bundle` package), not from a CDN.

This module holds the paths only: the bodies and answers are components generated from the models in
orchestrator.schemas (web.components), and each loaded runbook adds its own POST .../jobs with the JSON
Schema of its inputs, so that a client or a fuzzer can send valid jobs."""

from __future__ import annotations

import copy
from typing import Any

import swagger_ui_bundle
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from orchestrator.auth import VIEW
from orchestrator.runbooks.schema import Runbook
from orchestrator.schemas.jobs import JobFilter, RecordsQuery, RerunQuery
from orchestrator.schemas.runbooks import AuditQuery, HistoryQuery
from orchestrator.states import Action
from web.auth import principal_of
from web.components import CREATE_JOB, parameters, per_runbook, ref, schemas


def _json(schema: str, description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref(schema)}}}


def _errors(*codes: int) -> dict[str, Any]:
    texts = {
        400: "Malformed request",
        401: "No or bad credentials",
        403: "The role lacks the permission",
        404: "Not found",
        409: "Not allowed in the job's current status",
        413: "Body too large",
        422: "A field is invalid (named in `fields`)",
        429: "Rate limited (see Retry-After)",
    }
    return {str(c): _json("Error", texts[c]) for c in (401, 403, *codes)}


def _path(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": description}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": responses, **extra}


def _body(schema: str) -> dict[str, Any]:
    return {"required": False, "content": {"application/json": {"schema": ref(schema)}}}


NAME = _path("name", "the runbook's name")
JOB = _path("job_id", "the job's id")
SSE = {"description": "text/event-stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}}


PATHS: dict[str, Any] = {
    "/api/v1/runbooks": {"get": _op("List runbooks (job:view)", {"200": _json("RunbookList"), **_errors()})},
    "/api/v1/runbooks/{name}": {
        "parameters": [NAME],
        "get": _op("A runbook's definition (job:view)", {"200": _json("Runbook"), **_errors(404)}),
    },
    CREATE_JOB: {
        "parameters": [NAME],
        "post": _op(
            "Create a job (job:run)",
            {
                "201": _json("Job", "created"),
                "200": _json("Job", "the job of this idempotency_key"),
                **_errors(400, 404, 413, 422, 429),
            },
            requestBody={
                "required": False,
                "content": {
                    "application/json": {"schema": ref("JobBody")},
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "description": "one field per input (files as file parts; a CSV or JSON file for a "
                            "records input), or `inputs` as JSON; also priority, idempotency_key, run_at, preview",
                            "properties": {"inputs": {"type": "string", "description": "JSON object"}},
                            "additionalProperties": {"type": "string", "format": "binary"},
                        }
                    },
                },
            },
        ),
    },
    "/api/v1/runbooks/{name}/versions": {
        "parameters": [NAME],
        "get": _op(
            "Every version of a runbook, newest first, with a diff from the one before (job:view)",
            {
                "200": _json("VersionList"),
                **_errors(404),
            },
        ),
    },
    "/api/v1/runbooks/{name}/schema": {
        "parameters": [NAME],
        "get": _op(
            "The JSON Schema of a runbook's inputs: the run form's, and what POST .../jobs takes (job:view)",
            {
                "200": {
                    "description": "a JSON Schema (2020-12) of the `inputs` object",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                **_errors(404),
            },
        ),
    },
    "/api/v1/runbooks/{name}/history": {
        "parameters": [NAME],
        "get": _op(
            "Past jobs of a runbook, paginated (job:view)",
            {"200": _json("HistoryPage"), **_errors(404, 422)},
            parameters=parameters(HistoryQuery),
        ),
    },
    "/api/v1/runbooks/{name}/history/{job_id}": {
        "parameters": [NAME, JOB],
        "get": _op("One history entry (job:view)", {"200": _json("HistoryEntry"), **_errors(404)}),
        "delete": _op(
            "Delete a finished job, its events and its artifact files (job:edit)",
            {"204": {"description": "deleted"}, **_errors(404, 409)},
        ),
    },
    "/api/v1/audit": {
        "get": _op(
            "The audit log, deleted jobs' entries included, oldest first (job:edit)",
            {"200": _json("AuditPage"), **_errors(422)},
            parameters=parameters(AuditQuery),
        )
    },
    "/api/v1/jobs": {
        "get": _op(
            "List and filter jobs (job:view)",
            {"200": _json("JobList"), **_errors(422)},
            parameters=parameters(JobFilter),
        )
    },
    "/api/v1/jobs/{job_id}": {
        "parameters": [JOB],
        "get": _op("The whole job (job:view)", {"200": _json("Job"), **_errors(404)}),
    },
    "/api/v1/jobs/{job_id}/records": {
        "parameters": [JOB],
        "get": _op(
            "A job's records in sequence order, a page at a time (job:view)",
            {"200": _json("RecordPage"), **_errors(404, 422)},
            parameters=parameters(RecordsQuery),
        ),
    },
    "/api/v1/jobs/{job_id}/{action}": {
        "parameters": [
            JOB,
            {
                "name": "action",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "enum": [a.value for a in Action]},
            },
        ],
        "post": _op(
            "Approve or reject (job:approve); pause, resume or cancel (job:control)",
            {"200": _json("Job"), **_errors(400, 404, 409, 422)},
            requestBody=_body("ActionBody"),
        ),
    },
    "/api/v1/jobs/{job_id}/control": {
        "parameters": [JOB],
        "post": _op(
            "Take control of a paused or waiting job's live browser (job:control); 409 naming who holds it",
            {"200": _json("ControlState"), **_errors(404, 409)},
        ),
        "delete": _op(
            "Give control back (job:control)",
            {"200": {"description": "`{job_id, given_back}`: false when the caller held none"}, **_errors()},
        ),
    },
    "/api/v1/jobs/{job_id}/input": {
        "parameters": [JOB],
        "post": _op(
            "Send one input to the live browser while holding control (job:control); typed text is never stored",
            {"202": _json("InputAccepted", "Accepted"), **_errors(400, 404, 409, 413, 422)},
            requestBody={"required": True, "content": {"application/json": {"schema": ref("InputBody")}}},
        ),
    },
    "/api/v1/jobs/{job_id}/rerun": {
        "parameters": [JOB],
        "post": _op(
            "A new job with the same inputs and runbook version (job:run)",
            {"201": _json("Job"), **_errors(400, 404, 409, 422, 429)},
            parameters=parameters(RerunQuery),
            description="`?from_step=STEP_ID` starts it at that step of the job, with the values captured before it.",
        ),
    },
    "/api/v1/jobs/{job_id}/artifacts/{artifact_id}": {
        "parameters": [JOB, _path("artifact_id", "the artifact's id")],
        "get": _op(
            "Download a file (job:view)",
            {
                "200": {
                    "description": "the file's bytes, in its own content type (a JSON export is JSON)",
                    "content": {"*/*": {"schema": {}}},
                },
                **_errors(404),
            },
        ),
    },
    "/api/v1/jobs/{job_id}/frame": {
        "parameters": [JOB],
        "get": _op(
            "The job's latest live frame, a JPEG, while somebody watches the job (job:view)",
            {
                "200": {"description": "the frame", "content": {"image/jpeg": {"schema": {"type": "string"}}}},
                **_errors(404),
            },
            parameters=[_query("seq", {"type": "string"}, "the frame's number from its SSE event (ignored)")],
        ),
    },
    "/api/v1/jobs/{job_id}/events": {
        "parameters": [JOB],
        "get": _op("SSE stream of one job (job:view)", {"200": SSE, **_errors(404)}),
    },
    "/api/v1/events": {"get": _op("SSE stream of every job's status and report (job:view)", {"200": SSE, **_errors()})},
    "/api/v1/runbooks/{name}/hooks": {
        "parameters": [NAME],
        "post": _op(
            "Make a webhook for this runbook; its token is shown only now (admin)",
            {"201": _json("HookCreated", "created"), **_errors(404)},
        ),
        "get": _op("The runbook's webhooks, without their tokens (admin)", {"200": _json("HookList"), **_errors(404)}),
    },
    "/api/v1/runbooks/{name}/hooks/{hook_id}": {
        "parameters": [NAME, _path("hook_id", "the webhook's id")],
        "delete": _op("Revoke a webhook (admin)", {"204": {"description": "revoked"}, **_errors(404)}),
    },
    "/api/v1/schedules": {
        "get": _op(
            "Every schedule, from runbook files and made here (job:view)",
            {"200": _json("ScheduleList"), **_errors()},
            parameters=[_query("runbook", {"type": "string"}, "one runbook's")],
        ),
        "post": _op(
            "Make a schedule (job:run)",
            {"201": _json("Schedule", "created"), **_errors(400, 404, 422)},
            requestBody={"required": True, "content": {"application/json": {"schema": ref("ScheduleCreate")}}},
        ),
    },
    "/api/v1/schedules/{schedule_id}": {
        "parameters": [_path("schedule_id", "the schedule's id")],
        "get": _op("One schedule (job:view)", {"200": _json("Schedule"), **_errors(404)}),
        "patch": _op(
            "Change a schedule; `active` pauses and resumes it, the only field of one from a runbook file (job:run)",
            {"200": _json("Schedule"), **_errors(400, 404, 409, 422)},
            requestBody=_body("ScheduleUpdate"),
        ),
        "delete": _op(
            "Delete a schedule made here (job:run); one from a runbook file: 409",
            {"204": {"description": "deleted"}, **_errors(404, 409)},
        ),
    },
    "/api/v1/hooks": {
        "post": _op(
            "Start a job of a webhook's runbook; the JSON body is its inputs (source webhook)",
            {
                "201": _json("Job", "created"),
                "200": _json("Job", "the job of this Idempotency-Key"),
                **{k: v for k, v in _errors(400, 413, 422, 429).items() if k != "403"},
            },
            description=(
                "The webhook's token (`orch_hook_...`, shown when the hook is made) is the only credential: "
                "send it as `Authorization: Bearer orch_hook_...`. Unlike the token in the path, a header "
                "stays out of access logs. A missing, revoked or unknown token answers 401."
            ),
            security=[{"bearer": []}],
            parameters=[{"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string"}}],
            requestBody={"required": False, "content": {"application/json": {"schema": {"type": "object"}}}},
        ),
    },
    "/api/v1/hooks/{hook_token}": {
        "parameters": [_path("hook_token", "the webhook's secret token, its only credential")],
        "post": _op(
            "Start a job of the hook's runbook; the JSON body is its inputs (source webhook)",
            {
                "201": _json("Job", "created"),
                "200": _json("Job", "the job of this Idempotency-Key"),
                **{k: v for k, v in _errors(400, 404, 413, 422, 429).items() if k not in ("401", "403")},
            },
            security=[],
            parameters=[{"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string"}}],
            requestBody={"required": False, "content": {"application/json": {"schema": {"type": "object"}}}},
        ),
    },
    "/api/v1/ingest/jobs": {
        "post": _op(
            "Report a run made elsewhere; the same source + external_id updates it (job:run)",
            {"201": _json("Job", "created"), "200": _json("Job", "updated"), **_errors(400, 413, 422)},
            requestBody={"required": True, "content": {"application/json": {"schema": ref("IngestJob")}}},
        )
    },
    "/api/v1/ingest/jobs/{job_id}": {
        "parameters": [JOB],
        "patch": _op(
            "Update a reported run (job:run)",
            {"200": _json("Job"), **_errors(400, 404, 422)},
            requestBody=_body("IngestPatch"),
        ),
    },
    "/api/v1/ingest/jobs/{job_id}/files": {
        "parameters": [JOB],
        "post": _op(
            "Attach files to a reported run (job:run)",
            {"201": _json("IngestFiles"), **_errors(400, 404, 413, 422)},
            requestBody={
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file"],
                            "properties": {
                                "file": {
                                    "type": "array",
                                    "minItems": 1,
                                    "maxItems": 20,
                                    "items": {"type": "string", "format": "binary"},
                                }
                            },
                        }
                    }
                },
            },
        ),
    },
    "/api/v1/workers": {
        "get": _op(
            "The worker processes, live or lost (no heartbeat lately), with the jobs they run now (job:view)",
            {"200": _json("WorkerList"), **_errors()},
        )
    },
    "/api/v1/channels": {
        "get": _op(
            "Notification channels, never their URLs' paths or secrets (admin)",
            {"200": _json("ChannelList"), **_errors()},
        ),
        "post": _op(
            "Make a notification channel: one of email, slack or webhook (admin)",
            {"201": _json("Channel", "Created"), **_errors(400, 409, 413, 422)},
            requestBody={"required": True, "content": {"application/json": {"schema": ref("ChannelBody")}}},
        ),
    },
    "/api/v1/channels/{name}": {
        "parameters": [_path("name", "the channel's name")],
        "delete": _op("Remove a notification channel (admin)", {"204": {"description": "Removed"}, **_errors(404)}),
    },
    "/api/v1/approvals": {
        "get": _op(
            "The approval inbox: every job waiting for a decision the caller may make now (job:approve, named "
            "by the step's approvers or none named, not approved by them yet, self-approval as the runbook "
            "says), the oldest request first (job:view)",
            {"200": _json("ApprovalInbox"), **_errors()},
        )
    },
    "/metrics": {
        "get": _op(
            "Cluster-wide metrics in Prometheus' text format (a token of the metrics role, or admin)",
            {
                "200": {
                    "description": "Prometheus text format 0.0.4",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **_errors(),
            },
            description=(
                "orchestrator_jobs_total{runbook,status}, orchestrator_job_duration_seconds{runbook}, "
                "orchestrator_job_start_delay_seconds, orchestrator_steps_total{action,status}, "
                "orchestrator_jobs{status}, orchestrator_workers, orchestrator_worker_slots{state}, "
                "orchestrator_sse_connections (this web process) and process_* metrics. Open to anyone when "
                "the server runs with ORCH_METRICS_PUBLIC=1."
            ),
        )
    },
    "/healthz": {
        "get": _op(
            "200 when the database and Redis answer, else 503",
            {"200": _json("Health", "healthy"), "503": _json("Health", "the database or Redis is away")},
            security=[],
        )
    },
}


def document(runbooks: list[Runbook] | None = None, max_records: int = 10_000) -> dict[str, Any]:
    """The OpenAPI document; with `runbooks`, each one's jobs and schedules take its typed inputs."""
    paths, components = copy.deepcopy(PATHS), schemas()
    per_runbook(paths, components, runbooks or [], max_records)
    return {
        "openapi": "3.0.3",
        "info": {"title": "Runbook orchestrator", "version": "1", "description": "JSON API under /api/v1."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "orchestrator tokens create"},
                "session": {"type": "apiKey", "in": "cookie", "name": "orch_session"},
            },
        },
        "security": [{"bearer": []}, {"session": []}],
    }


async def openapi_json(request: Request) -> JSONResponse:
    """The document; each runbook's own operation (its inputs' schema) only for callers who may see
    runbooks (job:view): the document itself is public, the runbook catalogue is not."""
    svc = request.app.state.svc
    principal = principal_of(request)
    runbooks = []
    if principal is not None and principal.can(VIEW):
        await svc.catalog.refresh()
        runbooks = [v.runbook for v in svc.catalog.versions()]
    return JSONResponse(document(runbooks, svc.settings.max_records))


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>API · Runbook Orchestrator</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/static/docs.js"></script></body></html>
"""


async def docs(request: Request) -> HTMLResponse:
    return HTMLResponse(DOCS_PAGE)


ROUTES = [
    Route("/openapi.json", openapi_json),
    Route("/docs", docs),
    Mount("/docs/assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets"),
]
