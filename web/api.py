"""The JSON API under /api/v1."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from orchestrator import audit, history, hooks, ingest, jobs, schedules
from orchestrator.auth import EDIT, RUN, TOKENS, VIEW
from orchestrator.db import tables as t
from orchestrator.db.engine import reading
from orchestrator.errors import ArtifactNotFound, InvalidInput, JobNotFound, NotFound, OrchestratorError
from orchestrator.runbooks.catalog import version_history
from orchestrator.services import Services
from orchestrator.states import PERMISSIONS, Action, JobStatus
from orchestrator.views import RECORD_STATUSES, artifact_view, records_page, runbook_view
from web import sse
from web.auth import guard, hook_of, require, throttle


def _svc(request: Request) -> Services:
    return request.app.state.svc


def _actor(request: Request) -> str:
    return require(request).actor


async def _json_body(request: Request) -> Any:
    """The request's JSON: strict (no NaN or Infinity, valid UTF-8 without lone surrogates, nesting
    Python can handle), so nothing that cannot be stored gets any further."""
    body = await request.body()
    if not body.strip():
        return {}
    try:
        value = json.loads(body, parse_constant=_no_constant, parse_float=_finite)
        json.dumps(value, ensure_ascii=False).encode("utf-8")  # a lone surrogate cannot be stored
    except RecursionError:
        raise OrchestratorError("The request body is nested too deeply.") from None
    except UnicodeError as exc:
        raise OrchestratorError(f"The request body is not valid UTF-8 text: {getattr(exc, 'reason', exc)}.") from None
    except ValueError as exc:
        raise OrchestratorError(f"The request body is not valid JSON: {exc}.") from None
    return value


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("multipart/form-data")


#: Multipart fields that are the request's own (JSON-encoded where they are not plain strings);
#: every other field is an input, and a file field is a file or records input.
REQUEST_FIELDS = {
    "priority": False,
    "idempotency_key": False,
    "run_at": False,
    "tags": True,
    "data": True,
    "video": True,
}


async def _multipart_body(request: Request) -> dict[str, Any]:
    """A job sent as a form with files: `inputs` (JSON) and one field per input, files included."""
    body: dict[str, Any] = {}
    inputs: dict[str, Any] = {}
    async with request.form(max_files=20, max_fields=100) as form:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                inputs[name] = {"filename": value.filename or name, "content_type": value.content_type}
                inputs[name]["content"] = await value.read()
            elif name == "inputs":
                parsed = _json_field(name, value)
                if not isinstance(parsed, dict):
                    raise InvalidInput({"inputs": "must be a JSON object"})
                inputs = {**parsed, **inputs}
            elif name == "preview":
                body["preview"] = value.lower() in ("true", "1", "yes", "on")
            elif name in REQUEST_FIELDS:
                body[name] = _json_field(name, value) if REQUEST_FIELDS[name] else value
            else:
                inputs[name] = value
    body["inputs"] = inputs
    return body


def _json_field(name: str, value: str) -> Any:
    try:
        return json.loads(value, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError):
        raise InvalidInput({name: "must be JSON"}) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is too large a number")
    return value


async def list_runbooks(request: Request) -> JSONResponse:
    svc = _svc(request)
    await svc.catalog.refresh()
    grouped = await schedules.by_runbook(svc)
    items = [runbook_view(v, grouped.get(v.runbook.name, [])) for v in svc.catalog.versions()]
    return JSONResponse({"items": items, "problems": [str(p) for p in svc.catalog.problems]})


async def get_runbook(request: Request) -> JSONResponse:
    svc = _svc(request)
    version = await svc.catalog.get(request.path_params["name"])
    return JSONResponse(runbook_view(version, await schedules.listed(svc, version.runbook.name)))


async def create_job(request: Request) -> JSONResponse:
    svc = _svc(request)
    principal = require(request)
    actor = principal.actor
    body = await _multipart_body(request) if _is_multipart(request) else await _json_body(request)
    source = request.headers.get("x-source", "api")
    if source not in ("api", "ui"):
        raise InvalidInput({"X-Source": "must be api or ui"})
    job_request = jobs.JobRequest.from_json(body, source=source, actor=actor, owner=principal.human)
    job, created = await jobs.create(svc, request.path_params["name"], job_request)
    return JSONResponse(job, status_code=201 if created else 200)


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput({name: "must be a whole number"}) from None
    if not low <= value <= high:
        raise InvalidInput({name: f"must be between {low} and {high}"})
    return value


def _date(request: Request, name: str, *, end_of_day: bool = False) -> datetime | None:
    """An ISO date or time; a bare date as `to` means up to the end of that day."""
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput({name: "must be an ISO 8601 date, such as 2026-01-31 or 2026-01-31T08:00:00Z"}) from None
    if end_of_day and len(raw) == 10:
        value += timedelta(days=1)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def job_filter(request: Request) -> jobs.JobFilter:
    q = request.query_params
    statuses = [s for s in q.get("status", "").split(",") if s]
    return jobs.JobFilter(
        status=statuses,
        runbook=q.get("runbook") or None,
        q=q.get("q") or None,
        tag=q.get("tag") or None,
        source=q.get("source") or None,
        start_from=_date(request, "from"),
        until=_date(request, "to", end_of_day=True),
        limit=_int(request, "limit", 50, 1, 200),
        start=_int(request, "start", 0, 0, 10_000_000),
    )


async def list_jobs(request: Request) -> JSONResponse:
    return JSONResponse(await jobs.list_jobs(_svc(request), job_filter(request)))


async def get_job(request: Request) -> JSONResponse:
    return JSONResponse(await jobs.get(_svc(request), request.path_params["job_id"]))


async def job_records(request: Request) -> JSONResponse:
    """GET /api/v1/jobs/{id}/records?status=&limit=&start=: a job's records, a page at a time."""
    statuses = [s for s in request.query_params.get("status", "").split(",") if s]
    errors: dict[str, str] = {}
    if any(s not in RECORD_STATUSES for s in statuses):
        errors["status"] = f"must be one or more of {', '.join(RECORD_STATUSES)}, comma-separated"
    paging = {}
    for name, default, low, high in (("limit", 100, 1, 500), ("start", 0, 0, 10_000_000)):
        try:
            paging[name] = _int(request, name, default, low, high)
        except InvalidInput as exc:
            errors.update(exc.fields)
    if errors:
        raise InvalidInput(errors)
    job_id = request.path_params["job_id"]
    async with reading(_svc(request).engine) as conn:
        if (await conn.execute(select(t.jobs.c.id).where(t.jobs.c.id == job_id))).first() is None:
            raise JobNotFound(f"No job has the id {job_id}.")
        return JSONResponse(await records_page(conn, job_id, statuses, paging["start"], paging["limit"]))


async def act(request: Request) -> JSONResponse:
    try:
        action = Action(request.path_params["action"])
    except ValueError:
        raise InvalidInput({"action": f"must be one of {', '.join(a.value for a in Action)}"}) from None
    body = await _json_body(request)
    comment = body.get("comment") if isinstance(body, dict) else None
    if comment is not None and (not isinstance(comment, str) or len(comment) > 2000):
        raise InvalidInput({"comment": "must be a string of at most 2000 characters"})
    seen = body.get("expected_status") if isinstance(body, dict) else None
    if seen is not None and (not isinstance(seen, str) or seen not in {s.value for s in JobStatus}):
        raise InvalidInput({"expected_status": f"must be one of {', '.join(s.value for s in JobStatus)}"})
    asked = body.get("expected_request") if isinstance(body, dict) else None
    if asked is not None and (not isinstance(asked, str) or len(asked) > 64):
        raise InvalidInput({"expected_request": "must be the requested_at of the approval request you saw"})
    job_id = request.path_params["job_id"]
    principal = require(request, PERMISSIONS[action])
    seen_status = JobStatus(seen) if seen else None
    answer = await jobs.act(
        _svc(request), job_id, action, principal.actor, comment, seen_status, principal.human, asked
    )
    return JSONResponse(answer)


async def rerun(request: Request) -> JSONResponse:
    query = request.query_params
    principal = require(request)
    job = await jobs.rerun(
        _svc(request),
        request.path_params["job_id"],
        principal.actor,
        human=principal.human,
        records=query.get("records") or None,
        from_step=query.get("from_step") or None,
    )
    return JSONResponse(job, status_code=201)


async def artifact(request: Request) -> Response:
    svc = _svc(request)
    job_id, artifact_id = request.path_params["job_id"], request.path_params["artifact_id"]
    async with reading(svc.engine) as conn:
        row = (
            (
                await conn.execute(
                    select(t.artifacts).where(t.artifacts.c.id == artifact_id, t.artifacts.c.job_id == job_id)
                )
            )
            .mappings()
            .first()
        )
    if row is None:
        raise ArtifactNotFound(f"Job {job_id} has no artifact {artifact_id}.")
    path = svc.store.path_of(row["path"])
    if not path.is_file():
        raise ArtifactNotFound(f"The file of artifact {artifact_id} is missing from the artifact store.")
    # only raster images show inline (the timeline's pictures); anything else, SVG included, is a download
    inline = row["mime_type"] in INLINE_TYPES and request.query_params.get("download") is None
    return FileResponse(
        path,
        media_type=row["mime_type"],
        filename=row["name"],
        content_disposition_type="inline" if inline else "attachment",
        # no-store: a file may hold what only signed-in people may see; no cache keeps it after sign-out
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"},
    )


async def runbook_versions(request: Request) -> JSONResponse:
    versions = await version_history(_svc(request).engine, request.path_params["name"])
    return JSONResponse({"items": versions})


async def runbook_history(request: Request) -> JSONResponse:
    sort, limit, start = history.parse_query(request.query_params)
    previews = request.query_params.get("previews", "") == "include"
    name = request.path_params["name"]
    return JSONResponse(await history.page(_svc(request), name, sort, limit, start, previews))


async def history_entry(request: Request) -> JSONResponse:
    name, job_id = request.path_params["name"], request.path_params["job_id"]
    return JSONResponse(await history.one(_svc(request), name, job_id))


async def delete_history_entry(request: Request) -> Response:
    await history.remove(_svc(request), request.path_params["name"], request.path_params["job_id"], _actor(request))
    return Response(status_code=204)


async def list_audit(request: Request) -> JSONResponse:
    """GET /api/v1/audit: the audit log (job:edit), deleted jobs' entries included."""
    q = request.query_params
    found = await audit.listed(
        _svc(request),
        job_id=q.get("job_id") or None,
        actor=q.get("actor") or None,
        action=q.get("action") or None,
        limit=_int(request, "limit", 100, 1, 500),
        start=_int(request, "start", 0, 0, 10_000_000),
    )
    return JSONResponse(found)


async def ingest_job(request: Request) -> JSONResponse:
    principal = require(request)
    job, created = await ingest.report(_svc(request), await _json_body(request), principal.actor, principal.human)
    return JSONResponse(job, status_code=201 if created else 200)


async def ingest_patch(request: Request) -> JSONResponse:
    job_id = request.path_params["job_id"]
    return JSONResponse(await ingest.patch(_svc(request), job_id, await _json_body(request), _actor(request)))


async def ingest_files(request: Request) -> JSONResponse:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidInput({"file": "send the files as multipart/form-data"})
    files = []
    async with request.form(max_files=20, max_fields=20) as form:  # closes the spooled files
        for _, value in form.multi_items():
            if isinstance(value, UploadFile):
                files.append((value.filename or "file", await value.read(), value.content_type))
    rows = await ingest.attach(_svc(request), request.path_params["job_id"], files)
    return JSONResponse({"files": [artifact_view(r) for r in rows]}, status_code=201)


async def create_hook(request: Request) -> JSONResponse:
    svc, name = _svc(request), request.path_params["name"]
    await svc.catalog.get(name)  # 404 for an unknown runbook
    maker = require(request)
    hook_id, token = await hooks.create(svc.engine, name, maker.actor, owner=maker.human)
    body = {"id": hook_id, "runbook": name, "url": hooks.path_of(token), "token": token}
    return JSONResponse(body, status_code=201)


async def list_hooks(request: Request) -> JSONResponse:
    return JSONResponse({"items": await hooks.listed(_svc(request).engine, request.path_params["name"])})


async def revoke_hook(request: Request) -> Response:
    name, hook_id = request.path_params["name"], request.path_params["hook_id"]
    if not await hooks.revoke(_svc(request).engine, name, hook_id):
        raise NotFound(f"Runbook {name} has no active hook {hook_id}.")
    return Response(status_code=204)


async def call_hook(request: Request) -> JSONResponse:
    """POST /api/v1/hooks with `Authorization: Bearer orch_hook_...`, or POST /api/v1/hooks/{token}:
    the token is the credential; the JSON body is the job's inputs; the job is the hook maker's."""
    svc = _svc(request)
    hook = await hook_of(request)
    await throttle(request, f"hook:{hook['id']}", request.app.state.settings.job_rate)
    inputs = await _json_body(request)
    if not isinstance(inputs, dict):
        raise InvalidInput({"body": "must be a JSON object of the runbook's inputs"})
    key = request.headers.get("idempotency-key") or None
    job_request = jobs.JobRequest(
        inputs=inputs, source="webhook", actor=f"hook:{hook['id']}", owner=hook["owner"], idempotency_key=key
    )
    job, created = await jobs.create(svc, hook["runbook"], job_request)
    return JSONResponse(job, status_code=201 if created else 200)


INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


async def list_schedules(request: Request) -> JSONResponse:
    items = await schedules.listed(_svc(request), request.query_params.get("runbook") or None)
    return JSONResponse({"items": items, "total": len(items)})


async def create_schedule(request: Request) -> JSONResponse:
    body = await _json_body(request)
    principal = require(request)
    made = await schedules.create(_svc(request), body, principal.actor, owner=principal.human)
    return JSONResponse(made, status_code=201)


async def get_schedule(request: Request) -> JSONResponse:
    return JSONResponse(await schedules.get(_svc(request), request.path_params["schedule_id"]))


async def patch_schedule(request: Request) -> JSONResponse:
    body = await _json_body(request)
    principal = require(request)
    changed = await schedules.update_one(_svc(request), request.path_params["schedule_id"], body, principal.human)
    return JSONResponse(changed)


async def delete_schedule(request: Request) -> Response:
    await schedules.remove(_svc(request), request.path_params["schedule_id"])
    return Response(status_code=204)


async def healthz(request: Request) -> JSONResponse:
    svc = _svc(request)
    checks: dict[str, str] = {}
    try:
        async with reading(svc.engine) as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        checks["database"] = f"error: {exc.__class__.__name__}"
    try:
        await svc.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = f"error: {exc.__class__.__name__}"
    healthy = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if healthy else "unavailable", **checks}, status_code=200 if healthy else 503)


ROUTES = [
    Route("/api/v1/runbooks", guard(VIEW, list_runbooks)),
    Route("/api/v1/runbooks/{name}", guard(VIEW, get_runbook)),
    Route("/api/v1/runbooks/{name}/jobs", guard(RUN, create_job), methods=["POST"]),
    Route("/api/v1/runbooks/{name}/versions", guard(VIEW, runbook_versions)),
    Route("/api/v1/runbooks/{name}/history", guard(VIEW, runbook_history)),
    Route("/api/v1/runbooks/{name}/history/{job_id}", guard(VIEW, history_entry), methods=["GET"]),
    Route("/api/v1/runbooks/{name}/history/{job_id}", guard(EDIT, delete_history_entry), methods=["DELETE"]),
    Route("/api/v1/audit", guard(EDIT, list_audit)),
    Route("/api/v1/jobs", guard(VIEW, list_jobs)),
    Route("/api/v1/jobs/{job_id}", guard(VIEW, get_job)),
    Route("/api/v1/jobs/{job_id}/records", guard(VIEW, job_records)),
    Route("/api/v1/jobs/{job_id}/events", guard(VIEW, sse.job_stream)),
    Route("/api/v1/jobs/{job_id}/frame", guard(VIEW, sse.frame)),
    Route("/api/v1/jobs/{job_id}/artifacts/{artifact_id}", guard(VIEW, artifact)),
    Route("/api/v1/jobs/{job_id}/rerun", guard(RUN, rerun), methods=["POST"]),
    # the permission depends on the action: checked in `act`
    Route("/api/v1/jobs/{job_id}/{action}", guard(None, act), methods=["POST"]),
    Route("/api/v1/events", guard(VIEW, sse.all_stream)),
    Route("/api/v1/runbooks/{name}/hooks", guard(TOKENS, create_hook), methods=["POST"]),
    Route("/api/v1/runbooks/{name}/hooks", guard(TOKENS, list_hooks), methods=["GET"]),
    Route("/api/v1/runbooks/{name}/hooks/{hook_id}", guard(TOKENS, revoke_hook), methods=["DELETE"]),
    Route("/api/v1/hooks", call_hook, methods=["POST"]),  # the token in the Authorization header
    Route("/api/v1/hooks/{hook_token}", call_hook, methods=["POST"]),
    Route("/api/v1/schedules", guard(VIEW, list_schedules), methods=["GET"]),
    Route("/api/v1/schedules", guard(RUN, create_schedule), methods=["POST"]),
    Route("/api/v1/schedules/{schedule_id}", guard(VIEW, get_schedule), methods=["GET"]),
    Route("/api/v1/schedules/{schedule_id}", guard(RUN, patch_schedule), methods=["PATCH"]),
    Route("/api/v1/schedules/{schedule_id}", guard(RUN, delete_schedule), methods=["DELETE"]),
    Route("/api/v1/ingest/jobs", guard(RUN, ingest_job), methods=["POST"]),
    Route("/api/v1/ingest/jobs/{job_id}", guard(RUN, ingest_patch), methods=["PATCH"]),
    Route("/api/v1/ingest/jobs/{job_id}/files", guard(RUN, ingest_files), methods=["POST"]),
    Route("/healthz", healthz),
]
