"""HTML pages (Jinja2); they fill themselves in live from the SSE streams."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from orchestrator import jobs, schedules
from orchestrator.auth import VIEW
from orchestrator.runbooks.catalog import version_history
from orchestrator.runbooks.redaction import masked_source
from orchestrator.services import Services
from orchestrator.views import runbook_view
from web.api import job_filter
from web.auth import guard

TABS = {
    "all": [],
    "running": ["queued", "running", "waiting_for_approval", "paused"],
    "completed": ["completed"],
    "failed": ["failed"],
}


def _render(request: Request, name: str, context: dict[str, object]) -> Response:
    return request.app.state.templates.TemplateResponse(request, name, context)


async def home(request: Request) -> Response:
    return RedirectResponse("/jobs", status_code=302)


async def jobs_page(request: Request) -> Response:
    svc: Services = request.app.state.svc
    tab = request.query_params.get("tab", "all")
    tab = tab if tab in TABS else "all"
    flt = job_filter(request)
    if not flt.status:
        flt.status = TABS[tab]
    page = await jobs.list_jobs(svc, flt)
    await svc.catalog.refresh()
    names = ("status", "runbook", "q", "tag", "source", "from", "to", "limit", "start")
    filters = {k: request.query_params.get(k, "") for k in names}
    return _render(
        request,
        "jobs.html",
        {"page": page, "filters": filters, "tab": tab, "runbooks": [v.runbook.name for v in svc.catalog.versions()]},
    )


async def job_page(request: Request) -> Response:
    job = await jobs.get(request.app.state.svc, request.path_params["job_id"])
    return _render(request, "job.html", {"job": job})


async def runbooks_page(request: Request) -> Response:
    svc: Services = request.app.state.svc
    await svc.catalog.refresh()
    grouped = await schedules.by_runbook(svc)
    items = [runbook_view(v, grouped.get(v.runbook.name, [])) for v in svc.catalog.versions()]
    return _render(request, "runbooks.html", {"runbooks": items, "errors": [str(p) for p in svc.catalog.problems]})


async def runbook_page(request: Request) -> Response:
    svc: Services = request.app.state.svc
    version = await svc.catalog.get(request.path_params["name"])
    view = runbook_view(version, await schedules.listed(svc, version.runbook.name))
    view["source"] = masked_source(version.source)
    history = await jobs.list_jobs(svc, jobs.JobFilter(runbook=version.runbook.name, limit=20))
    versions = await version_history(svc.engine, version.runbook.name)
    context = {"runbook": view, "history": history["items"], "versions": versions}
    return _render(request, "runbook.html", context)


ROUTES = [
    Route("/", guard(VIEW, home, page=True)),
    Route("/jobs", guard(VIEW, jobs_page, page=True)),
    Route("/jobs/{job_id}", guard(VIEW, job_page, page=True)),
    Route("/runbooks", guard(VIEW, runbooks_page, page=True)),
    Route("/runbooks/{name}", guard(VIEW, runbook_page, page=True)),
]
