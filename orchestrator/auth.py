"""Who may do what: users with scrypt password hashes, API tokens stored hashed, roles mapped to
permissions (SPEC §9), and server-side sessions whose id alone travels in a signed cookie.

A disabled user is out at once: every request reads their session or token again, and both are
refused while `users.disabled_at` is set (a token by its owner)."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.db import tables as t
from orchestrator.db.engine import reading, writing
from orchestrator.db.tables import aware, utcnow
from orchestrator.errors import Forbidden, InvalidInput, OrchestratorError

VIEW, RUN, CONTROL, APPROVE, EDIT = "job:view", "job:run", "job:control", "job:approve", "job:edit"
USERS, TOKENS = "users", "tokens"
#: GET /metrics and nothing else: the `metrics` role's only permission, for a scraper's token.
METRICS = "metrics"
#: Notification channels (orchestrator/channels.py): where messages go, so admins only.
CHANNELS = "channels"
ROLES: dict[str, frozenset[str]] = {
    "viewer": frozenset({VIEW}),
    "operator": frozenset({VIEW, RUN, CONTROL}),
    "approver": frozenset({VIEW, APPROVE}),
    "admin": frozenset({VIEW, RUN, CONTROL, APPROVE, EDIT, USERS, TOKENS, METRICS, CHANNELS}),
    "metrics": frozenset({METRICS}),
}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
TOKEN_PREFIX = "orch_"
SESSION_TTL = timedelta(days=7)
#: scrypt cost: about 60 ms and 32 MiB per hash here; stored with each hash, so it can be raised later.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
MIN_PASSWORD = 8


@dataclass(frozen=True)
class Principal:
    """The one making a request: a signed-in user, an API token, or a local command-line user."""

    name: str
    role: str
    kind: str  # user | token | cli
    session_id: str | None = None
    #: For a token: the user it acts for (api_tokens.owner), None for a service token.
    owner: str | None = None
    #: For a token that acts for a user: that user's roles, which an approval's `role:NAME` matches.
    owner_role: str | None = None

    @property
    def permissions(self) -> frozenset[str]:
        return permissions_of(self.role)

    @property
    def roles(self) -> tuple[str, ...]:
        return roles_of(self.role)

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    @property
    def person_roles(self) -> tuple[str, ...]:
        """The roles of the person behind this principal (`human`): a user's own, a token's owner's; a
        token that acts for nobody and the command line are no person with roles."""
        if self.kind == "user":
            return self.roles
        if self.kind == "token" and self.owner:
            return roles_of(self.owner_role or "")
        return ()

    @property
    def actor(self) -> str:
        """How the audit log and `created_by` name this principal."""
        return {"user": self.name, "token": f"token:{self.name}"}.get(self.kind, f"{self.kind}:{self.name}")

    @property
    def human(self) -> str:
        """The person behind this principal, whom jobs belong to and self-approval compares: a user
        themself, a token's owner (`token:NAME` for a token nobody owns), `cli:NAME` on the command line."""
        if self.kind == "token" and self.owner:
            return self.owner
        return self.actor


def roles_of(role: str) -> tuple[str, ...]:
    """The roles of a stored `role` value: one name, or several as a comma list (`approver,finance`)."""
    return tuple(name for name in (part.strip() for part in role.split(",")) if name)


@functools.lru_cache(maxsize=256)
def permissions_of(role: str) -> frozenset[str]:
    """What a `role` value allows: the union of its built-in roles' permissions. Other names are groups
    (matched by an approval's `role:NAME`) and allow nothing."""
    return frozenset(permission for name in roles_of(role) for permission in ROLES.get(name, ()))


def check_role(role: str) -> str:
    """A `role` value as stored: one role or a comma list of them, with at least one built-in role; the
    other names (groups) are names as users' are. Returns it spelt without spaces or repeats."""
    names = list(dict.fromkeys(roles_of(role)))
    built_in = ", ".join(ROLES)
    bad = [name for name in names if not NAME.match(name)]
    if bad:
        raise InvalidInput(
            {"role": f"{bad[0][:60]!r} is no role name: use letters, digits or . _ @ - ({built_in}, or a group)"}
        )
    if not any(name in ROLES for name in names):
        raise InvalidInput(
            {"role": f"must hold at least one of {built_in} (other names are groups, which allow nothing)"}
        )
    stored = ",".join(names)
    longest = getattr(t.users.c.role.type, "length", None)  # the column's width
    if longest is not None and len(stored) > longest:
        raise InvalidInput({"role": f"the roles must fit in {longest} characters, commas included"})
    return stored


def check_name(name: str, field: str = "name") -> str:
    if not NAME.match(name):
        raise InvalidInput({field: "must be 1-100 letters, digits or . _ @ -, starting with a letter or digit"})
    return name


# -- passwords -------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed, base64.b64decode(digest))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=128 * n * r * 2, dklen=32)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class SignInBusy(OrchestratorError):
    """The server is busy checking other sign-ins; try again in a moment."""

    status_code = 503


class Hasher:
    """Password hashing off the event loop (scrypt takes ~60 ms of CPU; hashlib releases the GIL while
    it runs): a few threads, and at most `backlog` callers waiting for one. Any more are refused with
    SignInBusy (503) rather than queued without bound, so a flood of sign-ins cannot stall the rest."""

    def __init__(self, threads: int = 2, backlog: int = 16) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="password")
        self._capacity = max(1, threads) + max(0, backlog)
        self._busy = 0  # running or waiting; only touched on the event loop's thread

    async def run(self, work: Callable[..., Any], *args: Any) -> Any:
        if self._busy >= self._capacity:
            raise SignInBusy(retry_after=1)
        self._busy += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, work, *args)
        finally:
            self._busy -= 1

    async def verify(self, password: str, stored: str) -> bool:
        return bool(await self.run(verify_password, password, stored))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@functools.cache
def _dummy_hash() -> str:
    """Checked against when the user does not exist, so a wrong name costs as long as a wrong password."""
    return hash_password(secrets.token_urlsafe(16))


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput({"password": f"must be at least {MIN_PASSWORD} characters"})
    if len(password) > 1024:
        raise InvalidInput({"password": "must be at most 1024 characters"})
    return password


# -- users -----------------------------------------------------------------------------------


async def add_user(engine: AsyncEngine, name: str, role: str, password: str) -> None:
    check_name(name, "username")
    role = check_role(role)
    check_password(password)
    hashed = await asyncio.to_thread(hash_password, password)
    now = utcnow()
    try:
        async with writing(engine) as conn:
            await conn.execute(
                insert(t.users).values(name=name, role=role, password_hash=hashed, created_at=now, updated_at=now)
            )
    except IntegrityError:
        raise InvalidInput({"username": f"a user named {name} already exists"}) from None


async def set_password(engine: AsyncEngine, name: str, password: str) -> None:
    check_password(password)
    hashed = await asyncio.to_thread(hash_password, password)
    async with writing(engine) as conn:
        changed = await conn.execute(
            update(t.users).where(t.users.c.name == name).values(password_hash=hashed, updated_at=utcnow())
        )
        if changed.rowcount != 1:
            raise InvalidInput({"username": f"no user is named {name}"})
        await conn.execute(delete(t.sessions).where(t.sessions.c.user_name == name))  # sign out everywhere


async def set_disabled(engine: AsyncEngine, name: str, disabled: bool) -> None:
    """Disable a user (they can no longer sign in; their sessions end and the tokens and webhooks they
    own stop working, at the next request) or enable them again (their tokens work again; ended
    sessions stay ended)."""
    async with writing(engine) as conn:
        changed = await conn.execute(
            update(t.users)
            .where(t.users.c.name == name)
            .values(disabled_at=utcnow() if disabled else None, updated_at=utcnow())
        )
        if changed.rowcount != 1:
            raise InvalidInput({"username": f"no user is named {name}"})
        if disabled:
            await conn.execute(delete(t.sessions).where(t.sessions.c.user_name == name))


async def list_users(engine: AsyncEngine) -> list[dict[str, Any]]:
    columns = (t.users.c.name, t.users.c.role, t.users.c.created_at, t.users.c.disabled_at)
    async with reading(engine) as conn:
        rows = await conn.execute(select(*columns).order_by(t.users.c.name))
        return [dict(r._mapping) for r in rows]


async def count_users(engine: AsyncEngine) -> int:
    async with reading(engine) as conn:
        return int((await conn.execute(select(func.count()).select_from(t.users))).scalar() or 0)


async def login(
    engine: AsyncEngine, name: str, password: str, hasher: Hasher | None = None
) -> tuple[Principal, str] | None:
    """Check a name and password (in `hasher`'s threads, else a thread of asyncio's); on success open a
    session and return it with its id. A disabled user with the right password gets Forbidden: only
    someone who knows the password learns that the account is disabled."""
    async with reading(engine) as conn:
        row = (await conn.execute(select(t.users).where(t.users.c.name == name))).mappings().first()
    if row is None:
        await _verify(hasher, password, await asyncio.to_thread(_dummy_hash))
        return None
    if not await _verify(hasher, password, row["password_hash"]):
        return None
    if row["disabled_at"] is not None:
        raise Forbidden(f"The account {name} is disabled; ask an administrator to enable it.")
    session_id = secrets.token_urlsafe(32)
    now = utcnow()
    async with writing(engine) as conn:
        await conn.execute(
            insert(t.sessions).values(
                id=secret_hash(session_id), user_name=name, created_at=now, expires_at=now + SESSION_TTL
            )
        )
        await conn.execute(delete(t.sessions).where(t.sessions.c.user_name == name, t.sessions.c.expires_at < now))
    return Principal(name, row["role"], "user", session_id), session_id


async def _verify(hasher: Hasher | None, password: str, stored: str) -> bool:
    if hasher is not None:
        return await hasher.verify(password, stored)
    return await asyncio.to_thread(verify_password, password, stored)


async def session_principal(engine: AsyncEngine, session_id: str) -> Principal | None:
    async with reading(engine) as conn:
        row = (
            await conn.execute(
                select(t.users.c.name, t.users.c.role, t.sessions.c.expires_at)
                .join(t.users, t.users.c.name == t.sessions.c.user_name)
                .where(t.sessions.c.id == secret_hash(session_id), t.users.c.disabled_at.is_(None))
            )
        ).first()
    if row is None or aware(row.expires_at) < utcnow():
        return None
    return Principal(row.name, row.role, "user", session_id)


async def logout(engine: AsyncEngine, session_id: str) -> None:
    async with writing(engine) as conn:
        await conn.execute(delete(t.sessions).where(t.sessions.c.id == secret_hash(session_id)))


async def purge_sessions(engine: AsyncEngine) -> int:
    """Delete every expired session; return how many there were."""
    async with writing(engine) as conn:
        purged = await conn.execute(delete(t.sessions).where(t.sessions.c.expires_at < utcnow()))
        return int(purged.rowcount or 0)


# -- API tokens ------------------------------------------------------------------------------


async def create_token(engine: AsyncEngine, name: str, role: str, created_by: str, owner: str | None = None) -> str:
    """A new token, acting for the user `owner` if given (an enabled user); only its hash is stored,
    so this is the one time it can be shown."""
    check_name(name)
    role = check_role(role)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    async with writing(engine) as conn:
        if owner is not None:
            await _check_owner(conn, owner)
        await conn.execute(
            insert(t.tokens).values(
                id=secrets.token_hex(8),
                name=name,
                role=role,
                token_hash=secret_hash(token),
                created_by=created_by,
                owner=owner,
                created_at=utcnow(),
            )
        )
    return token


async def _check_owner(conn: Any, owner: str) -> None:
    found = (await conn.execute(select(t.users.c.disabled_at).where(t.users.c.name == owner))).first()
    if found is None:
        raise InvalidInput({"owner": f"no user is named {owner}"})
    if found.disabled_at is not None:
        raise InvalidInput({"owner": f"the user {owner} is disabled; enable them first"})


async def user_exists(engine: AsyncEngine, name: str) -> bool:
    async with reading(engine) as conn:
        return (await conn.execute(select(t.users.c.name).where(t.users.c.name == name))).first() is not None


async def live_secret(engine: AsyncEngine, table: Any, prefix: str, token: str, *columns: Any) -> Any:
    """The row of `table` (API tokens, webhooks) whose secret token this is, unless it was revoked;
    None too for a string that is not such a token at all. Only the SHA-256 of a token is stored."""
    if not token.startswith(prefix) or len(token) > 200:
        return None
    query = select(*columns).where(table.c.token_hash == secret_hash(token), table.c.revoked_at.is_(None))
    async with reading(engine) as conn:
        return (await conn.execute(query)).first()


def owner_enabled(table: Any) -> Any:
    """A condition on `table` (with an `owner` column): its owner is no disabled user. A token or webhook
    of a disabled user stops working with them. (An owner such as `token:NAME` or `cli:NAME` is never a
    user name: those cannot hold a colon.)"""
    disabled = select(t.users.c.name).where(t.users.c.name == table.c.owner, t.users.c.disabled_at.is_not(None))
    return ~disabled.exists()


async def token_principal(engine: AsyncEngine, token: str) -> Principal | None:
    owner_role = select(t.users.c.role).where(t.users.c.name == t.tokens.c.owner).scalar_subquery()
    columns = (t.tokens.c.name, t.tokens.c.role, t.tokens.c.owner, owner_enabled(t.tokens).label("enabled"))
    row = await live_secret(engine, t.tokens, TOKEN_PREFIX, token, *columns, owner_role.label("owner_role"))
    if row is None or not row.enabled:
        return None
    return Principal(row.name, row.role, "token", owner=row.owner, owner_role=row.owner_role)


async def list_tokens(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with reading(engine) as conn:
        rows = await conn.execute(
            select(
                t.tokens.c.id,
                t.tokens.c.name,
                t.tokens.c.role,
                t.tokens.c.owner,
                t.tokens.c.created_at,
                t.tokens.c.revoked_at,
            ).order_by(t.tokens.c.created_at)
        )
        return [dict(r._mapping) for r in rows]


async def revoke_token(engine: AsyncEngine, token_id: str) -> bool:
    async with writing(engine) as conn:
        changed = await conn.execute(
            update(t.tokens)
            .where(t.tokens.c.id == token_id, t.tokens.c.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        return changed.rowcount == 1


# -- CSRF ------------------------------------------------------------------------------------


def csrf_token(secret_key: str, session_id: str) -> str:
    """Bound to the session: derived from its id with the server's key, so nothing more is stored."""
    return hmac.new(secret_key.encode(), b"csrf:" + session_id.encode(), hashlib.sha256).hexdigest()


def csrf_ok(secret_key: str, session_id: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(csrf_token(secret_key, session_id), str(presented))


def secret_hash(secret: str) -> str:
    """Tokens and session ids are long random strings: a plain SHA-256 is a safe way to store them."""
    return hashlib.sha256(secret.encode()).hexdigest()
