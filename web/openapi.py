"""/openapi.json: every /api/v1 route with its request and response schemas, and /docs, which renders
it with Swagger UI served from this app (the `swagger-ui-bundle` package), not from a CDN."""

from __future__ import annotations

from typing import Any

import swagger_ui_bundle
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from orchestrator.history import SORTS
from orchestrator.ingest import STATUSES
from orchestrator.states import Action, JobStatus, StepStatus

STATUS_ENUM = [s.value for s in JobStatus]
TIME = {"type": "string", "format": "date-time"}
OPT_TIME = {"type": ["string", "null"], "format": "date-time"}
OPT_STR = {"type": ["string", "null"]}
OBJ = {"type": "object"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(props: dict[str, Any], required: list[str] | None = None, closed: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    if closed:
        schema["additionalProperties"] = False
    return schema


SCHEMAS: dict[str, Any] = {
    "Error": _obj(
        {
            "error": {"type": "string"},
            "fields": {"type": "object", "additionalProperties": {"type": "string"}},
            "status": {"type": "string"},
            "allowed_actions": {"type": "array", "items": {"type": "string"}},
        },
        ["error"],
    ),
    "Step": _obj(
        {
            "id": {"type": "string"},
            "name": OPT_STR,
            "action": {"type": "string"},
            "status": {"type": "string", "enum": [s.value for s in StepStatus]},
            "started_at": OPT_TIME,
            "finished_at": OPT_TIME,
            "duration_s": {"type": ["number", "null"]},
            "retries": {"type": "integer"},
            "attempt": {"type": "integer"},
            "captured": {"type": ["object", "null"]},
            "error": OPT_STR,
            "screenshot_url": OPT_STR,
        },
        ["id", "action", "status"],
    ),
    "Record": _obj(
        {
            "sequence": {"type": "integer"},
            "record_id": {"type": "string"},
            "record_name": OPT_STR,
            "status": {"type": "string", "enum": ["success", "failed", "skipped"]},
            "result": {},
            "error": OPT_STR,
            "processed_at": OPT_TIME,
        },
        ["sequence", "record_id", "status"],
    ),
    "Artifact": _obj(
        {
            "id": {"type": "string"},
            "kind": {"type": "string", "enum": ["screenshot", "video", "export", "download", "attachment"]},
            "name": {"type": "string"},
            "size": {"type": "integer"},
            "mime_type": {"type": "string"},
            "step_id": OPT_STR,
            "created_at": TIME,
            "url": {"type": "string"},
        },
        ["id", "kind", "name", "size", "mime_type", "created_at", "url"],
    ),
    "Audit": _obj(
        {
            "at": TIME,
            "actor": {"type": "string"},
            "action": {"type": "string"},
            "comment": OPT_STR,
            "outcome": {"type": "string"},
        },
        ["at", "actor", "action"],
    ),
    "JobSummary": _obj(
        {
            "id": {"type": "string"},
            "runbook": {"type": "string"},
            "runbook_version": {"type": ["integer", "null"]},
            "status": {"type": "string", "enum": STATUS_ENUM},
            "priority": {"type": "string"},
            "source": {"type": "string"},
            "external_id": OPT_STR,
            "robot": OPT_STR,
            "created_by": OPT_STR,
            "outputs": {"type": ["object", "null"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "data": OBJ,
            "created_at": TIME,
            "scheduled_at": OPT_TIME,
            "started_at": OPT_TIME,
            "finished_at": OPT_TIME,
            "duration_s": {"type": ["number", "null"]},
            "summary": OPT_STR,
            "error": {"type": ["object", "null"], "properties": {"message": {"type": "string"}, "step_id": OPT_STR}},
            "warnings": {"type": "boolean"},
            "metrics": OBJ,
            "record_counts": OBJ,
            "approval": {"type": ["object", "null"]},
            "parent_id": OPT_STR,
            "attempt": {"type": "integer"},
            "preview": {"type": "boolean"},
            "video": {"type": "boolean", "description": "the session is recorded as a video artifact"},
        },
        ["id", "runbook", "status", "source", "created_at"],
    ),
    "AuditPage": _obj(
        {
            "items": {"type": "array", "items": _obj({"job_id": {"type": "string"}}, ["job_id"])},
            "total": {"type": "integer"},
            "start": {"type": "integer"},
            "count": {"type": "integer"},
        },
        ["items", "total", "start", "count"],
    ),
    "JobList": _obj(
        {
            "items": {"type": "array", "items": _ref("JobSummary")},
            "total": {"type": "integer"},
            "start": {"type": "integer"},
            "count": {"type": "integer"},
        },
        ["items", "total", "start", "count"],
    ),
    "JobRequest": _obj(
        {
            "inputs": {"type": "object", "description": "the runbook's typed inputs"},
            "priority": {"type": "string", "enum": ["low", "normal", "high"]},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 100}},
            "data": {"type": "object"},
            "run_at": {"type": "string", "format": "date-time"},
            "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 200},
            "preview": {"type": "boolean"},
            "video": {"type": "boolean", "description": "record the session as a WebM video (settings.video)"},
        },
        closed=True,
    ),
    "ActionRequest": _obj(
        {
            "comment": {"type": "string", "maxLength": 2000},
            "expected_status": {"type": "string", "enum": STATUS_ENUM},
            "expected_request": {"type": "string", "maxLength": 64},
        },
        closed=True,
    ),
    "Runbook": _obj(
        {
            "name": {"type": "string"},
            "title": {"type": "string"},
            "description": OPT_STR,
            "status": {"type": "string", "enum": ["active", "draft"]},
            "version": {"type": "integer"},
            "hash": {"type": "string"},
            "inputs": OBJ,
            "settings": OBJ,
            "schedule": {"allOf": [_ref("Schedule")], "nullable": True, "description": "the one its file defines"},
            "schedules": {"type": "array", "items": _ref("Schedule"), "description": "every schedule of it"},
            "steps": {"type": "array", "items": OBJ},
            "outputs": {"type": "array", "items": {"type": "string"}},
        },
        ["name", "version", "inputs", "settings"],
    ),
    "RunbookList": _obj(
        {
            "items": {"type": "array", "items": _ref("Runbook")},
            "problems": {"type": "array", "items": {"type": "string"}},
        },
        ["items", "problems"],
    ),
    "HistoryEntry": _obj(
        {
            "id": {"type": "string"},
            "runbook": {"type": "string"},
            "success": {"type": "boolean"},
            "warnings": {"type": "boolean"},
            "duration": {"type": "array", "items": OPT_TIME, "minItems": 2, "maxItems": 2},
            "data": OBJ,
            "progress": {
                "type": "array",
                "items": _obj(
                    {
                        "task": _obj({"key": {"type": "string"}, "opts": OBJ}),
                        "result": _obj(
                            {
                                "key": {"type": "string"},
                                "success": {"type": "boolean"},
                                "status": {"type": "string"},
                                "message": {"type": "string"},
                            }
                        ),
                    }
                ),
            },
            "createdAt": TIME,
        },
        ["id", "runbook", "success", "warnings", "duration", "data", "progress", "createdAt"],
    ),
    "HistoryPage": _obj(
        {
            "_links": _obj({"self": OBJ, "next": OBJ, "prev": OBJ}, ["self"]),
            "_embedded": _obj({"job-history": {"type": "array", "items": _ref("HistoryEntry")}}, ["job-history"]),
            "start": {"type": "integer"},
            "count": {"type": "integer"},
            "total": {"type": "integer"},
        },
        ["_links", "_embedded", "start", "count", "total"],
    ),
    "HookCreated": _obj(
        {
            "id": {"type": "string"},
            "runbook": {"type": "string"},
            "url": {"type": "string"},
            "token": {"type": "string"},
        },
        ["id", "runbook", "url", "token"],
    ),
    "HookList": _obj({"items": {"type": "array", "items": OBJ}}, ["items"]),
    "Schedule": _obj(
        {
            "id": {"type": "string"},
            "runbook": {"type": "string"},
            "origin": {"type": "string", "enum": ["runbook", "api"], "description": "its runbook's file, or the API"},
            "cron": {"type": "string", "description": "five fields, or six with seconds last"},
            "timezone": {"type": "string"},
            "inputs": OBJ,
            "priority": {"type": ["string", "null"], "enum": ["low", "normal", "high"]},
            "catch_up": {"type": "string", "enum": ["none", "latest", "all"]},
            "overlap": {"type": "string", "enum": ["skip", "allow", "cancel_previous"]},
            "active": {"type": "boolean"},
            "previous_trigger": OPT_TIME,
            "next_trigger": OPT_TIME,
            "last_job_id": OPT_STR,
            "created_by": OPT_STR,
            "created_at": TIME,
            "updated_at": TIME,
            "url": {"type": "string"},
        },
        ["id", "runbook", "origin", "cron", "timezone", "active", "catch_up", "overlap", "next_trigger"],
    ),
    "ScheduleList": _obj(
        {"items": {"type": "array", "items": _ref("Schedule")}, "total": {"type": "integer"}}, ["items", "total"]
    ),
    "ScheduleCreate": _obj(
        {
            "runbook": {"type": "string"},
            "cron": {"type": "string"},
            "timezone": {"type": "string", "default": "UTC"},
            "inputs": OBJ,
            "priority": {"type": ["string", "null"], "enum": ["low", "normal", "high"]},
            "catch_up": {"type": "string", "enum": ["none", "latest", "all"], "default": "none"},
            "overlap": {"type": "string", "enum": ["skip", "allow", "cancel_previous"], "default": "skip"},
            "active": {"type": "boolean", "default": True},
        },
        ["runbook", "cron"],
        closed=True,
    ),
    "Version": _obj(
        {
            "version": {"type": "integer"},
            "hash": {"type": "string"},
            "created_at": TIME,
            "source": {"type": "string"},
            "diff": OPT_STR,
        },
        ["version", "hash", "created_at", "source"],
    ),
    "IngestRecord": _obj(
        {
            "sequence": {"type": "integer", "minimum": 0},
            "record_id": {"type": ["string", "integer"]},
            "record_name": {"type": "string"},
            "status": {"type": "string", "enum": ["success", "failed", "skipped"]},
            "result": {},
            "error": {"type": "string"},
            "processed_at": TIME,
        },
        ["record_id", "status"],
        closed=True,
    ),
    "IngestJob": _obj(
        {
            "process": {"type": "string", "maxLength": 100},
            "source": {"type": "string", "maxLength": 32},
            "external_id": {"type": "string", "maxLength": 200},
            "robot": {"type": "string", "maxLength": 200},
            "status": {"type": "string", "enum": sorted(STATUSES), "description": "other tools' names are mapped"},
            "started_at": TIME,
            "finished_at": TIME,
            "summary": {"type": "string", "maxLength": 2000},
            "error": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 100}},
            "data": {"type": "object"},
            "records": {"type": "array", "items": _ref("IngestRecord")},
        },
        ["process", "source", "external_id", "status"],
        closed=True,
    ),
    "IngestFiles": _obj({"files": {"type": "array", "items": _ref("Artifact")}}, ["files"]),
    "Health": _obj({"status": {"type": "string"}, "database": {"type": "string"}, "redis": {"type": "string"}}),
}
SCHEMAS["IngestPatch"] = _obj(
    {k: v for k, v in SCHEMAS["IngestJob"]["properties"].items() if k not in ("process", "source", "external_id")},
    closed=True,
)
SCHEMAS["RecordPage"] = _obj(
    {
        "items": {"type": "array", "items": _ref("Record")},
        "total": {"type": "integer"},
        "start": {"type": "integer"},
        "count": {"type": "integer"},
        "next": {**OPT_STR, "description": "the next page's URL; null on the last"},
    },
    ["items", "total", "start", "count", "next"],
)
SCHEMAS["Job"] = {
    "allOf": [
        _ref("JobSummary"),
        _obj(
            {
                "inputs": {**OBJ, "description": "secrets masked; not in the job list"},
                "steps": {"type": "array", "items": _ref("Step")},
                "records": {
                    "type": "array",
                    "items": _ref("Record"),
                    "description": "the first ORCH_JOB_RECORDS (100) records; records_page links to the rest",
                },
                "records_page": _obj(
                    {
                        "href": {"type": "string"},
                        "total": {"type": "integer"},
                        "count": {"type": "integer"},
                        "next": OPT_STR,
                    },
                    ["href", "total", "count", "next"],
                ),
                "artifacts": {"type": "array", "items": _ref("Artifact")},
                "audit": {"type": "array", "items": _ref("Audit")},
            },
            ["inputs", "steps", "records", "records_page", "artifacts", "audit"],
        ),
    ]
}


def _json(schema: str, description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


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


NAME = _path("name", "the runbook's name")
JOB = _path("job_id", "the job's id")
SSE = {"description": "text/event-stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}}
LIST_PARAMS = [
    _query("status", {"type": "string"}, "comma-separated statuses"),
    _query("runbook", {"type": "string"}, "one runbook"),
    _query("q", {"type": "string"}, "part of the runbook name or external id"),
    _query("tag", {"type": "string"}, "jobs with this tag"),
    _query("source", {"type": "string"}, "ui, api, schedule, webhook, trigger, or an ingesting tool"),
    _query("from", {"type": "string", "format": "date-time"}, "created at or after"),
    _query("to", {"type": "string", "format": "date-time"}, "created before (a bare date: through that day)"),
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}, "page size"),
    _query("start", {"type": "integer", "minimum": 0, "default": 0}, "offset"),
]


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": responses, **extra}


def _body(schema: str) -> dict[str, Any]:
    return {"required": False, "content": {"application/json": {"schema": _ref(schema)}}}


PATHS: dict[str, Any] = {
    "/api/v1/runbooks": {"get": _op("List runbooks (job:view)", {"200": _json("RunbookList"), **_errors()})},
    "/api/v1/runbooks/{name}": {
        "parameters": [NAME],
        "get": _op("A runbook's definition (job:view)", {"200": _json("Runbook"), **_errors(404)}),
    },
    "/api/v1/runbooks/{name}/jobs": {
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
                    "application/json": {"schema": _ref("JobRequest")},
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
                "200": {
                    "description": "OK",
                    "content": {
                        "application/json": {
                            "schema": _obj({"items": {"type": "array", "items": _ref("Version")}}, ["items"])
                        }
                    },
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
            parameters=[
                _query("sort", {"type": "string", "enum": list(SORTS), "default": "-createdAt"}, "order"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 30}, "page size"),
                _query("start", {"type": "integer", "minimum": 0, "default": 0}, "offset"),
                _query("previews", {"type": "string", "enum": ["include"]}, "include preview runs"),
            ],
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
            parameters=[
                _query("job_id", {"type": "string"}, "one job's entries"),
                _query("actor", {"type": "string"}, "one actor's entries"),
                _query("action", {"type": "string"}, "one action, such as approve or delete"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}, "page size"),
                _query("start", {"type": "integer", "minimum": 0, "default": 0}, "offset"),
            ],
        )
    },
    "/api/v1/jobs": {
        "get": _op("List and filter jobs (job:view)", {"200": _json("JobList"), **_errors(422)}, parameters=LIST_PARAMS)
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
            parameters=[
                _query("status", {"type": "string"}, "comma-separated: success, failed, skipped"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}, "page size"),
                _query("start", {"type": "integer", "minimum": 0, "default": 0}, "offset"),
            ],
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
            requestBody=_body("ActionRequest"),
        ),
    },
    "/api/v1/jobs/{job_id}/rerun": {
        "parameters": [JOB],
        "post": _op(
            "A new job with the same inputs and runbook version (job:run)",
            {"201": _json("Job"), **_errors(404, 409, 422)},
        ),
    },
    "/api/v1/jobs/{job_id}/artifacts/{artifact_id}": {
        "parameters": [JOB, _path("artifact_id", "the artifact's id")],
        "get": _op(
            "Download a file (job:view)",
            {
                "200": {
                    "description": "the file",
                    "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
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
            parameters=[_query("seq", {"type": "integer"}, "the frame's number from its SSE event (ignored)")],
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
            requestBody={"required": True, "content": {"application/json": {"schema": _ref("ScheduleCreate")}}},
        ),
    },
    "/api/v1/schedules/{schedule_id}": {
        "parameters": [_path("schedule_id", "the schedule's id")],
        "get": _op("One schedule (job:view)", {"200": _json("Schedule"), **_errors(404)}),
        "patch": _op(
            "Change a schedule; `active` pauses and resumes it, the only field of one from a runbook file (job:run)",
            {"200": _json("Schedule"), **_errors(400, 404, 409, 422)},
            requestBody={"required": True, "content": {"application/json": {"schema": OBJ}}},
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
            requestBody={"required": True, "content": {"application/json": {"schema": _ref("IngestJob")}}},
        )
    },
    "/api/v1/ingest/jobs/{job_id}": {
        "parameters": [JOB],
        "patch": _op(
            "Update a reported run (job:run)",
            {"200": _json("Job"), **_errors(400, 404, 422)},
            requestBody={
                "required": True,
                "content": {"application/json": {"schema": _ref("IngestPatch")}},
            },
        ),
    },
    "/api/v1/ingest/jobs/{job_id}/files": {
        "parameters": [JOB],
        "post": _op(
            "Attach files to a reported run (job:run)",
            {"201": _json("IngestFiles"), **_errors(404, 413, 422)},
            requestBody={
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": _obj({"file": {"type": "array", "items": {"type": "string", "format": "binary"}}})
                    }
                },
            },
        ),
    },
    "/healthz": {
        "get": _op(
            "200 when the database and Redis answer, else 503",
            {"200": _json("Health", "healthy"), "503": _json("Health", "the database or Redis is away")},
            security=[],
        )
    },
}


def _as_30(value: Any) -> Any:
    """OpenAPI 3.0 spelling (what most tools and this Swagger UI read): a type list becomes nullable
    or oneOf."""
    if isinstance(value, list):
        return [_as_30(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _as_30(v) for k, v in value.items()}
    kinds = out.get("type")
    if isinstance(kinds, list):
        rest = [k for k in kinds if k != "null"]
        del out["type"]
        if len(rest) == 1:
            out["type"] = rest[0]
        else:
            out["oneOf"] = [{"type": k} for k in rest]
        if "null" in kinds:
            out["nullable"] = True
    return out


def document() -> dict[str, Any]:
    return _as_30(
        {
            "openapi": "3.0.3",
            "info": {"title": "Runbook orchestrator", "version": "1", "description": "JSON API under /api/v1."},
            "servers": [{"url": "/"}],
            "paths": PATHS,
            "components": {
                "schemas": SCHEMAS,
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer", "description": "orchestrator tokens create"},
                    "session": {"type": "apiKey", "in": "cookie", "name": "orch_session"},
                },
            },
            "security": [{"bearer": []}, {"session": []}],
        }
    )


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(document())


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
