"""The worker registry (orchestrator/workers.py) shown: GET /api/v1/workers, and the /workers page,
which fetches its rows again every few seconds (GET /workers/rows, web/static/workers.js)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchestrator import workers
from orchestrator.auth import VIEW
from orchestrator.schemas.workers import WorkerList
from web.auth import guard
from web.pages import pieces

ROWS_URL = "/workers/rows"


async def _listed(request: Request) -> list[dict[str, Any]]:
    listed = await workers.listed(request.app.state.svc.redis)
    return WorkerList.model_validate({"items": listed}).model_dump(mode="json")["items"]


async def list_workers(request: Request) -> JSONResponse:
    return JSONResponse({"items": await _listed(request)}, headers={"Cache-Control": "no-store"})


async def workers_page(request: Request) -> Response:
    context = {"workers": await _listed(request), "rows_url": ROWS_URL}
    return request.app.state.templates.TemplateResponse(request, "workers.html", context)


async def worker_rows(request: Request) -> Response:
    return pieces(request, [("_worker_rows.html", {"workers": await _listed(request), "rows_url": ROWS_URL})])


ROUTES = [
    Route("/api/v1/workers", guard(VIEW, list_workers)),
    Route("/workers", guard(VIEW, workers_page, page=True)),
    Route(ROWS_URL, guard(VIEW, worker_rows)),
]
