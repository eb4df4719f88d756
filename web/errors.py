"""Errors to HTTP answers, in one place: JSON under /api, a page elsewhere."""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route

from orchestrator.errors import InvalidInput, OrchestratorError

log = logging.getLogger(__name__)


def error_body(message: str, **extra: Any) -> dict[str, Any]:
    return {"error": message, **{k: v for k, v in extra.items() if v is not None}}


def _answer(request: Request, status: int, body: dict[str, Any]) -> Response:
    if request.url.path.startswith("/api/") or "text/html" not in request.headers.get("accept", ""):
        return JSONResponse(body, status_code=status)
    templates = request.app.state.templates
    return templates.TemplateResponse(
        request, "error.html", {"status_code": status, "message": body["error"]}, status_code=status
    )


async def orchestrator_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OrchestratorError)
    fields = exc.fields if isinstance(exc, InvalidInput) else None
    extra = {k: v for k, v in exc.details.items() if k != "fields"}
    response = _answer(request, exc.status_code, error_body(exc.message, fields=fields, **extra))
    if "retry_after" in exc.details:
        response.headers["Retry-After"] = str(exc.details["retry_after"])
    if exc.status_code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="orchestrator"'
    return response


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail if exc.status_code != 404 else f"Nothing is at {request.url.path}."
    response = _answer(request, exc.status_code, error_body(str(message)))
    response.headers.update(exc.headers or {})
    if exc.status_code == 405:  # every method of the path, though several routes may serve it (RFC 9110)
        response.headers["Allow"] = ", ".join(allowed_methods(request))
    return response


def allowed_methods(request: Request) -> list[str]:
    """The methods the app serves at the request's path, over all its routes."""
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.methods and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods
    return sorted(methods)


async def server_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return _answer(request, 500, error_body("Something went wrong on the server; the error is in its log."))


HANDLERS = {OrchestratorError: orchestrator_error, HTTPException: http_error, Exception: server_error}
