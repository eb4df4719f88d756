"""The approval inbox (orchestrator/inbox.py) shown: GET /api/v1/approvals, and the /approvals page,
whose rows (GET /approvals/rows) are fetched again when a job's status or approval changes
(web/static/approvals.js); a decision there posts to POST /api/v1/jobs/{id}/approve|reject."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchestrator import inbox
from orchestrator.auth import VIEW
from orchestrator.schemas.approvals import ApprovalInbox
from web.auth import guard, require
from web.pages import pieces

ROWS_URL = "/approvals/rows"


async def _inbox(request: Request) -> dict[str, Any]:
    found = await inbox.inbox(request.app.state.svc.engine, require(request))
    return ApprovalInbox.model_validate(found).model_dump(mode="json")


def _rows(found: dict[str, Any]) -> dict[str, Any]:
    return {"items": found["items"], "total": found["total"], "rows_url": ROWS_URL}


async def list_approvals(request: Request) -> JSONResponse:
    return JSONResponse(await _inbox(request), headers={"Cache-Control": "no-store"})


async def approvals_page(request: Request) -> Response:
    return request.app.state.templates.TemplateResponse(request, "approvals.html", _rows(await _inbox(request)))


async def approval_rows(request: Request) -> Response:
    return pieces(request, [("_approval_rows.html", _rows(await _inbox(request)))])


ROUTES = [
    Route("/api/v1/approvals", guard(VIEW, list_approvals)),
    Route("/approvals", guard(VIEW, approvals_page, page=True)),
    Route(ROWS_URL, guard(VIEW, approval_rows)),
]
