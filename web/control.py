"""POST/DELETE /api/v1/jobs/{id}/control and POST /api/v1/jobs/{id}/input (job:control): a person takes
the wheel of a waiting job's live browser, sends it input and gives it back (orchestrator/control.py).
Typed text goes to Redis for the run and nowhere else: not to logs, the database or events."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from orchestrator import control
from orchestrator.auth import CONTROL
from orchestrator.schemas.common import validated
from orchestrator.schemas.control import InputBody
from orchestrator.services import Services
from web.auth import guard, require
from web.bodies import json_body


def _svc(request: Request) -> Services:
    svc: Services = request.app.state.svc
    return svc


async def take(request: Request) -> JSONResponse:
    svc = _svc(request)
    state = await control.take(svc.engine, svc.redis, request.path_params["job_id"], require(request).actor)
    return JSONResponse(state)


async def give_back(request: Request) -> JSONResponse:
    svc = _svc(request)
    job_id = request.path_params["job_id"]
    given = await control.give_back(svc.engine, svc.redis, job_id, require(request).actor, "given back")
    return JSONResponse({"job_id": job_id, "given_back": given})


async def send(request: Request) -> JSONResponse:
    body = validated(InputBody, await json_body(request)).root
    svc = _svc(request)
    count = await control.send(
        svc.engine, svc.redis, request.path_params["job_id"], require(request).actor, body.model_dump()
    )
    return JSONResponse({"inputs": count}, status_code=202)


ROUTES = [
    Route("/api/v1/jobs/{job_id}/control", guard(CONTROL, take), methods=["POST"]),
    Route("/api/v1/jobs/{job_id}/control", guard(CONTROL, give_back), methods=["DELETE"]),
    Route("/api/v1/jobs/{job_id}/input", guard(CONTROL, send), methods=["POST"]),
]
