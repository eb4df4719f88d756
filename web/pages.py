"""HTML pages (Jinja2), and the pieces of them a live page fetches when an event says they changed:
GET /jobs/rows (a jobs table's rows) and GET /jobs/{id}/parts (pieces of the job page,
web/fragments.py), guarded as the pages are."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from orchestrator import events, jobs, schedules
from orchestrator.auth import VIEW
from orchestrator.db.engine import reading
from orchestrator.runbooks.catalog import version_history
from orchestrator.runbooks.redaction import masked_source
from orchestrator.services import Services
from orchestrator.views import job_view, runbook_view
from web import fragments
from web.api import job_filter
from web.auth import guard

TABS = {
    "all": [],
    "running": ["queued", "running", "waiting_for_approval", "paused"],
    "completed": ["completed"],
    "failed": ["failed"],
}
#: What an empty jobs table says, by the page it is on.
EMPTY = {"jobs": "No jobs match these filters.", "runbook": "This runbook has not run yet."}
HISTORY = 20  # the jobs a runbook's page lists


def _render(request: Request, name: str, context: dict[str, object]) -> Response:
    return request.app.state.templates.TemplateResponse(request, name, context)


def pieces(request: Request, found: Iterable[tuple[str, dict[str, Any]]]) -> Response:
    """Partials rendered alone, each in a <template> (where even table rows parse), for a page to swap in."""
    templates = request.app.state.templates
    html = "".join(f"<template>{templates.get_template(name).render(context)}</template>" for name, context in found)
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


async def home(request: Request) -> Response:
    return RedirectResponse("/jobs", status_code=302)


def _listed(request: Request) -> tuple[jobs.JobFilter, str]:
    """The job list's filter as the query names it; a tab stands for its statuses unless one is named."""
    tab = request.query_params.get("tab", "all")
    tab = tab if tab in TABS else "all"
    flt = job_filter(request)
    if not flt.status:
        flt.status = TABS[tab]
    return flt, tab


def _rows(items: list[dict[str, Any]], query: str, start: int, view: str) -> dict[str, Any]:
    """What _job_rows.html needs; `query` is what GET /jobs/rows is asked for the same rows."""
    return {"rows": items, "rows_url": f"/jobs/rows?{query}", "first_page": start == 0, "empty": EMPTY[view]}


async def jobs_page(request: Request) -> Response:
    svc: Services = request.app.state.svc
    flt, tab = _listed(request)
    page = await jobs.list_jobs(svc, flt)
    await svc.catalog.refresh()
    names = ("status", "runbook", "q", "tag", "source", "from", "to", "limit", "start")
    filters = {k: request.query_params.get(k, "") for k in names}
    runbooks = [v.runbook.name for v in svc.catalog.versions()]
    rows = _rows(page["items"], request.url.query, flt.start, "jobs")
    return _render(request, "jobs.html", {"page": page, "filters": filters, "tab": tab, "runbooks": runbooks, **rows})


async def job_rows(request: Request) -> Response:
    """GET /jobs/rows?<the job list's query>[&view=runbook]: the rows that list shows now."""
    flt, _ = _listed(request)
    page = await jobs.list_jobs(request.app.state.svc, flt)
    view = "runbook" if request.query_params.get("view") == "runbook" else "jobs"
    return pieces(request, [("_job_rows.html", _rows(page["items"], request.url.query, flt.start, view))])


async def job_page(request: Request) -> Response:
    svc: Services = request.app.state.svc
    job_id = request.path_params["job_id"]
    async with reading(svc.engine) as conn:
        last = await events.last_id(conn, job_id)  # read before the job: what happens after reaches the page
        job = await job_view(conn, job_id, svc.settings.job_records)
    return _render(request, "job.html", fragments.page_context(request, job, last))


async def job_parts(request: Request) -> Response:
    """GET /jobs/{id}/parts?part=KEY...[&status=&limit=]: the job page's pieces these keys name (status
    and limit: the records table's filter and length)."""
    return pieces(request, await fragments.job_pieces(request))


async def runbooks_page(request: Request) -> Response:
    svc: Services = request.app.state.svc
    await svc.catalog.refresh()
    grouped = await schedules.by_runbook(svc)
    items = [runbook_view(v, grouped.get(v.runbook.name, [])) for v in svc.catalog.versions()]
    return _render(request, "runbooks.html", {"runbooks": items, "errors": [str(p) for p in svc.catalog.problems]})


async def runbook_page(request: Request) -> Response:
    svc: Services = request.app.state.svc
    version = await svc.catalog.get(request.path_params["name"])
    name = version.runbook.name
    view = runbook_view(version, await schedules.listed(svc, name))
    view["source"] = masked_source(version.source)
    history = await jobs.list_jobs(svc, jobs.JobFilter(runbook=name, limit=HISTORY))
    versions = await version_history(svc.engine, name)
    rows = _rows(history["items"], urlencode({"runbook": name, "limit": HISTORY, "view": "runbook"}), 0, "runbook")
    return _render(request, "runbook.html", {"runbook": view, "versions": versions, **rows})


ROUTES = [
    Route("/", guard(VIEW, home, page=True)),
    Route("/jobs", guard(VIEW, jobs_page, page=True)),
    # the pieces answer 401 where their page sends a person to sign in (a script fetches them)
    Route("/jobs/rows", guard(VIEW, job_rows)),  # before /jobs/{job_id}: "rows" is no job id
    Route("/jobs/{job_id}", guard(VIEW, job_page, page=True)),
    Route("/jobs/{job_id}/parts", guard(VIEW, job_parts)),
    Route("/runbooks", guard(VIEW, runbooks_page, page=True)),
    Route("/runbooks/{name}", guard(VIEW, runbook_page, page=True)),
]
