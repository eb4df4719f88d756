"""The JSON API under /api/v1."""

from __future__ import annotations

from sqlalchemy import select, text
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route
from starlette.types import Scope

from orchestrator import audit, history, hooks, ingest, jobs, schedules
from orchestrator.auth import EDIT, RUN, TOKENS, VIEW
from orchestrator.db import tables as t
from orchestrator.db.engine import reading
from orchestrator.errors import ArtifactNotFound, InvalidInput, JobNotFound, NotFound
from orchestrator.runbooks.catalog import version_history
from orchestrator.schemas.common import query_of, validated
from orchestrator.schemas.inputs import DIALECT, inputs_schema
from orchestrator.schemas.jobs import ActionBody, JobFilter, RecordsQuery, RerunQuery
from orchestrator.schemas.runbooks import AuditQuery
from orchestrator.services import Services
from orchestrator.states import PERMISSIONS, Action
from orchestrator.views import artifact_view, records_page, runbook_view
from web import download, sse
from web.auth import guard, hook_of, require, throttle
from web.bodies import is_multipart, job_form, json_body


class ActionRoute(Route):
    """/api/v1/jobs/{id}/{action}, but for the words another route serves there (frame, records): a POST
    to those is answered 405 with that route's methods; any other word is a 422 naming `action`."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE and child["path_params"]["action"] in _served_beside(self):
            return Match.NONE, {}
        return match, child


def _served_beside(route: Route) -> set[str]:
    """The fixed last words of the other routes that share this route's path but for its last part."""
    stem = route.path.rsplit("/", 1)[0] + "/"
    return {
        r.path.removeprefix(stem)
        for r in ROUTES
        if r is not route and r.path.startswith(stem) and "/" not in r.path.removeprefix(stem)
    }


def _svc(request: Request) -> Services:
    return request.app.state.svc


def _actor(request: Request) -> str:
    return require(request).actor


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
    await svc.catalog.get(request.path_params["name"])  # 404 for an unknown runbook, whatever the body
    body = await job_form(request) if is_multipart(request) else await json_body(request)
    source = request.headers.get("x-source", "api")
    if source not in ("api", "ui"):
        raise InvalidInput({"X-Source": "must be api or ui"})
    job_request = jobs.requested(body, source=source, actor=actor, owner=principal.human)
    job, created = await jobs.create(svc, request.path_params["name"], job_request)
    return JSONResponse(job, status_code=201 if created else 200)


def job_filter(request: Request) -> JobFilter:
    """The job list's filter from the query (the API's and the jobs page's)."""
    return query_of(JobFilter, request.query_params)


async def runbook_schema(request: Request) -> JSONResponse:
    """GET /api/v1/runbooks/{name}/schema: the JSON Schema of the runbook's inputs (the run form's)."""
    svc = _svc(request)
    runbook = (await svc.catalog.get(request.path_params["name"])).runbook
    schema = inputs_schema(runbook.inputs, svc.settings.max_records, title=f"Inputs of {runbook.name}")
    return JSONResponse({"$schema": DIALECT, **schema})


async def list_jobs(request: Request) -> JSONResponse:
    return JSONResponse(await jobs.list_jobs(_svc(request), job_filter(request)))


async def get_job(request: Request) -> JSONResponse:
    return JSONResponse(await jobs.get(_svc(request), request.path_params["job_id"]))


async def job_records(request: Request) -> JSONResponse:
    """GET /api/v1/jobs/{id}/records?status=&limit=&start=: a job's records, a page at a time."""
    query = query_of(RecordsQuery, request.query_params)
    job_id = request.path_params["job_id"]
    async with reading(_svc(request).engine) as conn:
        if (await conn.execute(select(t.jobs.c.id).where(t.jobs.c.id == job_id))).first() is None:
            raise JobNotFound(f"No job has the id {job_id}.")
        return JSONResponse(await records_page(conn, job_id, query.status, query.start, query.limit))


async def act(request: Request) -> JSONResponse:
    try:
        action = Action(request.path_params["action"])
    except ValueError:
        raise InvalidInput({"action": f"must be one of {', '.join(a.value for a in Action)}"}) from None
    body = validated(ActionBody, await json_body(request))
    job_id = request.path_params["job_id"]
    principal = require(request, PERMISSIONS[action])
    answer = await jobs.act(
        _svc(request),
        job_id,
        action,
        principal.actor,
        body.comment,
        body.expected_status,
        principal.human,
        body.expected_request,
    )
    return JSONResponse(answer)


async def rerun(request: Request) -> JSONResponse:
    query = query_of(RerunQuery, request.query_params)
    principal = require(request)
    job = await jobs.rerun(
        _svc(request),
        request.path_params["job_id"],
        principal.actor,
        human=principal.human,
        records=query.records,
        from_step=query.from_step,
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
    # only raster images show inline (the timeline's pictures); anything else, SVG included, is a download
    inline = row["mime_type"] in INLINE_TYPES and request.query_params.get("download") is None
    return await download.artifact_file(request, svc.store, row, inline)  # streamed from the store


async def runbook_versions(request: Request) -> JSONResponse:
    versions = await version_history(_svc(request).engine, request.path_params["name"])
    return JSONResponse({"items": versions})


async def runbook_history(request: Request) -> JSONResponse:
    q = history.parse_query(request.query_params)
    name = request.path_params["name"]
    return JSONResponse(await history.page(_svc(request), name, q.sort, q.limit, q.start, q.previews == "include"))


async def history_entry(request: Request) -> JSONResponse:
    name, job_id = request.path_params["name"], request.path_params["job_id"]
    return JSONResponse(await history.one(_svc(request), name, job_id))


async def delete_history_entry(request: Request) -> Response:
    await history.remove(_svc(request), request.path_params["name"], request.path_params["job_id"], _actor(request))
    return Response(status_code=204)


async def list_audit(request: Request) -> JSONResponse:
    """GET /api/v1/audit: the audit log (job:edit), deleted jobs' entries included."""
    q = query_of(AuditQuery, request.query_params)
    found = await audit.listed(
        _svc(request), job_id=q.job_id, actor=q.actor, action=q.action, limit=q.limit, start=q.start
    )
    return JSONResponse(found)


async def ingest_job(request: Request) -> JSONResponse:
    principal = require(request)
    job, created = await ingest.report(_svc(request), await json_body(request), principal.actor, principal.human)
    return JSONResponse(job, status_code=201 if created else 200)


async def ingest_patch(request: Request) -> JSONResponse:
    job_id = request.path_params["job_id"]
    return JSONResponse(await ingest.patch(_svc(request), job_id, await json_body(request), _actor(request)))


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
    inputs = await json_body(request)
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
    body = await json_body(request)
    principal = require(request)
    made = await schedules.create(_svc(request), body, principal.actor, owner=principal.human)
    return JSONResponse(made, status_code=201)


async def get_schedule(request: Request) -> JSONResponse:
    return JSONResponse(await schedules.get(_svc(request), request.path_params["schedule_id"]))


async def patch_schedule(request: Request) -> JSONResponse:
    body = await json_body(request)
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
    Route("/api/v1/runbooks/{name}/schema", guard(VIEW, runbook_schema)),
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
    ActionRoute("/api/v1/jobs/{job_id}/{action}", guard(None, act), methods=["POST"]),
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
