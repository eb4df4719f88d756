"""GET/POST /api/v1/channels and DELETE /api/v1/channels/{name}: notification channels, for admins
(the `channels` permission). A channel's URL and secret go in and never come out."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchestrator import channels
from orchestrator.auth import CHANNELS
from orchestrator.schemas.channels import ChannelBody
from orchestrator.schemas.common import validated
from orchestrator.services import Services
from web.auth import guard, require
from web.bodies import json_body

log = logging.getLogger(__name__)


def _svc(request: Request) -> Services:
    svc: Services = request.app.state.svc
    return svc


async def list_channels(request: Request) -> JSONResponse:
    return JSONResponse({"items": await channels.listing(_svc(request).engine)})


async def add_channel(request: Request) -> JSONResponse:
    body = validated(ChannelBody, await json_body(request))
    # ChannelBody already refused anything but exactly one of email, slack or webhook
    [(kind, target)] = [(k, v) for k in channels.KINDS if (v := getattr(body, k)) is not None]
    svc = _svc(request)
    actor = require(request).actor
    made = await channels.add(
        svc.engine, channels.Sealer(svc.settings.secret_key), body.name, kind, target, body.secret, actor
    )
    log.info("channel %s (%s) added by %s", made["name"], kind, actor)
    return JSONResponse(made, status_code=201)


async def remove_channel(request: Request) -> Response:
    name = request.path_params["name"]
    await channels.remove(_svc(request).engine, name)
    log.info("channel %s removed by %s", name, require(request).actor)
    return Response(status_code=204)


ROUTES = [
    Route("/api/v1/channels", guard(CHANNELS, list_channels), methods=["GET"]),
    Route("/api/v1/channels", guard(CHANNELS, add_channel), methods=["POST"]),
    Route("/api/v1/channels/{name}", guard(CHANNELS, remove_channel), methods=["DELETE"]),
]
