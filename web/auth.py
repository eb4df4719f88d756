"""Authentication for every request (bearer token or session cookie) and of webhook calls (their
token), permission checks per route, CSRF for cookie-authenticated writes, rate limits (in Redis, in
this process's memory while Redis is away), and the login and logout pages."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

from itsdangerous import BadSignature, TimestampSigner
from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser
from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from orchestrator import auth, control, hooks, inbox
from orchestrator.auth import Principal
from orchestrator.errors import Forbidden, NotFound, NotSignedIn
from orchestrator.ratelimit import rate_limit, refuse_when_spent

log = logging.getLogger(__name__)

COOKIE = "orch_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
Endpoint = Callable[[Request], Awaitable[Response]]


class WebUser(BaseUser):
    """What `request.user` is: the principal, for templates (`user.name`, `user.role`, `user.permissions`)."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        self.name = principal.name
        self.role = principal.role
        self.permissions = principal.permissions

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.name


class Backend(AuthenticationBackend):
    """Bearer token first, then the session cookie. A bad token is not an error here: the route answers
    401, as it does without credentials."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        principal = await _principal(conn)
        if principal is None:
            return None
        return AuthCredentials(sorted(principal.permissions)), WebUser(principal)


async def _principal(conn: HTTPConnection) -> Principal | None:
    svc = conn.app.state.svc
    header = conn.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        token = header[7:].strip()
        if token.startswith(hooks.PREFIX):  # a webhook's credential: call_hook reads it, it signs no one in
            return None
        return await auth.token_principal(svc.engine, token)
    cookie = conn.cookies.get(COOKIE)
    if not cookie:
        return None
    try:
        session_id = _signer(conn).unsign(cookie, max_age=int(auth.SESSION_TTL.total_seconds())).decode()
    except BadSignature:
        return None
    return await auth.session_principal(svc.engine, session_id)


async def still_signed_in(conn: HTTPConnection) -> bool:
    """Whether this request's credentials still sign someone in (not signed out, expired, revoked, nor
    of a disabled user): for long-lived answers, such as event streams, to check now and then."""
    return await _principal(conn) is not None


def _signer(conn: HTTPConnection) -> TimestampSigner:
    return TimestampSigner(conn.app.state.settings.secret_key, salt="orch-session")


def principal_of(request: HTTPConnection) -> Principal | None:
    user = request.scope.get("user")
    return user.principal if isinstance(user, WebUser) else None


def require(request: Request, permission: str | None = None) -> Principal:
    """The principal of this request, which must be signed in and, if given, hold `permission`."""
    principal = principal_of(request)
    if principal is None:
        raise NotSignedIn()
    if permission and not principal.can(permission):
        raise Forbidden(
            f"Your role ({principal.role}) does not allow this: it needs the permission {permission}.",
            permission=permission,
        )
    return principal


def guard(permission: str | None, endpoint: Endpoint, *, page: bool = False) -> Endpoint:
    """Wrap a route: sign-in required (pages redirect to /login), the permission checked, and a
    cookie-authenticated write must carry a CSRF token and come from this site."""

    async def guarded(request: Request) -> Response:
        if page and principal_of(request) is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        principal = require(request, None)
        if request.method not in SAFE_METHODS and principal.kind == "user":
            await check_csrf(request, principal)
        require(request, permission)
        if page:  # every page's header shows how many approvals this person may decide now
            request.state.approvals_waiting = await inbox.count(request.app.state.svc.engine, principal)
        return await endpoint(request)

    guarded.__name__ = getattr(endpoint, "__name__", "guarded")
    return guarded


async def check_csrf(request: Request, principal: Principal) -> None:
    check_same_origin(request)
    presented = request.headers.get("x-csrf-token")
    if presented is None and _is_form(request):
        presented = str((await request.form()).get("csrf_token") or "")
    if principal.session_id is None or not auth.csrf_ok(
        request.app.state.settings.secret_key, principal.session_id, presented
    ):
        raise Forbidden("This request lacks a valid CSRF token; reload the page and try again.")


def check_same_origin(request: Request) -> None:
    """A browser sends Origin (or at least Referer) with a write; it must name this site."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        raise Forbidden("Cross-site request refused: it names no Origin or Referer.")
    parts = urlsplit(source)
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    own = {f"{request.url.scheme}://{request.url.netloc}".lower()}
    public = urlsplit(request.app.state.settings.public_url)
    own.add(f"{public.scheme}://{public.netloc}".lower())
    if origin not in own:
        raise Forbidden(f"Cross-site request refused: it comes from {origin}.")


def _is_form(request: Request) -> bool:
    kind = request.headers.get("content-type", "")
    return kind.startswith("application/x-www-form-urlencoded") or kind.startswith("multipart/form-data")


# -- webhooks --------------------------------------------------------------------------------


async def hook_of(request: Request) -> dict[str, Any]:
    """The live hook whose token the request carries: in its path (404 when unknown), else in its
    Authorization header (401 when missing or unknown)."""
    engine = request.app.state.svc.engine
    if "hook_token" in request.path_params:
        hook = await hooks.find(engine, request.path_params["hook_token"])
        if hook is None:
            raise NotFound("No webhook has this address.")
        return hook
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    hook = await hooks.find(engine, token) if token else None
    if hook is None:
        raise NotSignedIn(
            "Send the webhook's token as `Authorization: Bearer orch_hook_...`; it is missing or unknown."
        )
    return hook


# -- rate limits -----------------------------------------------------------------------------


async def throttle(request: Request, key: str, limit: int, window_s: int = 60) -> None:
    """`rate_limit` for a request of this app: its Redis, and its process's counters when Redis is away."""
    svc = request.app.state.svc
    await rate_limit(svc.redis, key, limit, window_s, svc.counts)


def client_address(request: Request) -> str:
    """The peer's address from the ASGI scope. The server (`orchestrator web`) replaces it with the
    X-Forwarded-For client only for connections from ORCH_TRUSTED_PROXIES; anyone else's header is ignored."""
    return request.client.host if request.client else "unknown"


def name_key(username: str) -> str:
    """A user name as a rate-limit key: hashed, so what someone typed (a pasted password, say) is
    neither a Redis key nor in a log line."""
    return hashlib.sha256(username.encode()).hexdigest()[:32]


# -- pages -----------------------------------------------------------------------------------


def template_context(request: Request) -> dict[str, Any]:
    """For every page: who is signed in, what they may do, the CSRF token of their session, and how many
    approvals they may decide now (counted by `guard` for a page)."""
    principal = principal_of(request)
    if principal is None:
        return {"user": None, "permissions": frozenset(), "csrf_token": None}
    token = (
        auth.csrf_token(request.app.state.settings.secret_key, principal.session_id) if principal.session_id else None
    )
    return {
        "user": request.scope["user"],
        "permissions": principal.permissions,
        "csrf_token": token,
        "approvals_waiting": getattr(request.state, "approvals_waiting", None),
    }


def _next(raw: str | None) -> str:
    """Only a path on this site: never `//other.example` or `https://…`."""
    if not raw or not raw.startswith("/") or raw.startswith("//") or "\\" in raw:
        return "/jobs"
    return raw


async def login_page(request: Request) -> Response:
    target = _next(request.query_params.get("next"))
    if principal_of(request) is not None:
        return RedirectResponse(target, status_code=303)
    return _login_form(request, target)


def _login_form(
    request: Request, target: str, error: str | None = None, username: str = "", status: int = 200
) -> Response:
    return request.app.state.templates.TemplateResponse(
        request, "login.html", {"next": target, "error": error, "username": username}, status_code=status
    )


async def login_submit(request: Request) -> Response:
    """Sign in: limited per client address (every attempt) and per user name (failed attempts)
    (ORCH_LOGIN_RATE, ORCH_LOGIN_USER_RATE a minute), the password checked in the app's bounded
    password pool (503 when it is full)."""
    check_same_origin(request)
    svc, settings = request.app.state.svc, request.app.state.settings
    await throttle(request, f"login:{client_address(request)}", settings.login_rate)
    form = await request.form()
    username, password = str(form.get("username") or "")[:200], str(form.get("password") or "")[:1024]
    target = _next(str(form.get("next") or ""))
    if not (username and password):
        return _login_form(request, target, "Wrong username or password.", username, status=401)
    # per name, only failures count: signing in often is no offence. Whoever knows a name can still
    # keep its password sign-in shut by failing on purpose (README: Security); its tokens still work.
    per_name = f"login-user:{name_key(username)}"
    await refuse_when_spent(svc.redis, per_name, settings.login_user_rate, svc.counts)
    try:
        opened = await auth.login(svc.engine, username, password, request.app.state.hasher)
    except Forbidden as exc:
        return _login_form(request, target, exc.message, username, status=403)
    if opened is None:
        await throttle(request, per_name, settings.login_user_rate)
        return _login_form(request, target, "Wrong username or password.", username, status=401)
    _, session_id = opened
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        _signer(request).sign(session_id).decode(),
        max_age=int(auth.SESSION_TTL.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


async def logout(request: Request) -> Response:
    principal = principal_of(request)
    if principal is not None and principal.session_id:
        await auth.logout(request.app.state.svc.engine, principal.session_id)
        svc = request.app.state.svc  # whatever live browser they held is given back
        await control.give_back_all(svc.engine, svc.redis, principal.actor, "signed out")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


ROUTES = [
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login_submit, methods=["POST"]),
    Route("/logout", guard(None, logout), methods=["POST"]),
]
