"""create_app(): the Starlette application; its lifespan owns the database, Redis and the event hub."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from orchestrator import events, logs
from orchestrator.auth import Hasher
from orchestrator.config import Settings
from orchestrator.events import Hub
from orchestrator.services import Services
from orchestrator.states import JobStatus, StepStatus, allowed_actions
from web import api, approvals, auth, channels, control, metrics, openapi, pages, workers
from web.errors import HANDLERS
from web.feed import Feed
from web.security import BodyLimit, SecurityHeaders
from web.sse import HEARTBEAT_S, Streams

HERE = Path(__file__).parent


def templates() -> Jinja2Templates:
    result = Jinja2Templates(directory=HERE / "templates", context_processors=[auth.template_context])
    result.env.globals.update(JobStatus=JobStatus, StepStatus=StepStatus, allowed_actions=allowed_actions)
    return result


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    logs.redact_server_logs()  # however the app is served, its access log shows no token

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        svc = await Services.open(settings, "orchestrator-web")
        hub = Hub(svc.redis, heartbeat_s=HEARTBEAT_S)
        feed = Feed(svc.engine, hub, events.GLOBAL_TYPES)
        app.state.svc, app.state.hub, app.state.feed = svc, hub, feed
        app.state.streams = Streams(settings.sse_streams_per_user)
        app.state.hasher = Hasher(settings.password_threads, settings.password_backlog)
        try:
            await hub.start()
            await feed.start()
            await svc.catalog.refresh(force=True)
            yield
        finally:
            await feed.stop()
            await hub.stop()
            await svc.close()
            app.state.hasher.close()

    routes = [
        *auth.ROUTES,
        *openapi.ROUTES,
        *control.ROUTES,  # before api's /api/v1/jobs/{id}/{action}
        *api.ROUTES,
        *pages.ROUTES,
        *workers.ROUTES,
        *approvals.ROUTES,
        *metrics.ROUTES,
        *channels.ROUTES,
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    demo = settings.runbooks_dir / "demo"
    if demo.is_dir():
        routes.append(Mount("/demo", StaticFiles(directory=demo, html=True), name="demo"))
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers=HANDLERS,  # type: ignore[arg-type]
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(BodyLimit),
            Middleware(AuthenticationMiddleware, backend=auth.Backend()),
            Middleware(GZipMiddleware, minimum_size=2048),
        ],
    )
    app.state.templates = templates()
    app.state.settings = settings
    return app
