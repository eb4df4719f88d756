"""Notification channels: named places messages go (mail addresses, a Slack incoming webhook, a signed
webhook). Admins make them (`orchestrator channels add`, `POST /api/v1/channels`); the target is sealed
with ORCH_SECRET_KEY and never shown again: the list shows a summary (the addresses, or a URL's scheme
and host)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.config import MAIL_ADDRESS, split_url
from orchestrator.db import tables as t
from orchestrator.db.engine import reading, writing
from orchestrator.db.tables import utcnow
from orchestrator.errors import Conflict, InvalidInput, NotFound, OrchestratorError
from orchestrator.schemas.common import iso

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
#: An http(s) URL as a channel takes it: a host name or IPv4 address, a port that exists, no user or password.
PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
URL = re.compile(r"^https?://[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(:" + PORT + r')?([/?][!-"$-~]*)?$')
KINDS = ("email", "slack", "webhook")
MAX_ADDRESSES = 50


class ChannelNotFound(NotFound):
    """No channel has this name."""


@dataclass(frozen=True)
class Channel:
    """A channel as a sender needs it: `target` is the addresses (email) or the URL, `secret` the
    webhook's signing secret."""

    name: str
    kind: str
    target: list[str] | str
    secret: str | None = None


class Sealer:
    """Fernet with a key of its own, derived from ORCH_SECRET_KEY (not the secret inputs' key)."""

    def __init__(self, secret_key: str) -> None:
        digest = hashlib.sha256(b"orchestrator-channels:" + secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, value: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(value).encode()).decode()

    def open(self, token: str) -> dict[str, Any]:
        try:
            opened: dict[str, Any] = json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken as exc:
            raise OrchestratorError("A channel cannot be decrypted: ORCH_SECRET_KEY has changed.") from exc
        return opened


def check(name: str, kind: str, target: list[str] | str, secret: str | None = None) -> tuple[Any, str]:
    """A new channel's target, checked (every error names its field), and its summary."""
    if not NAME.fullmatch(name or ""):
        raise InvalidInput(
            {"name": "must be letters, digits, '_', '.' or '-', at most 100, starting with a letter or digit"}
        )
    if kind not in KINDS:
        raise InvalidInput({"kind": f"must be one of {', '.join(KINDS)}"})
    if kind == "email":
        addresses = [a.strip() for a in (target if isinstance(target, list) else target.split(",")) if a.strip()]
        if not addresses or len(addresses) > MAX_ADDRESSES:
            raise InvalidInput({"email": f"must be 1 to {MAX_ADDRESSES} mail addresses"})
        if bad := [a for a in addresses if not MAIL_ADDRESS.fullmatch(a)]:
            raise InvalidInput({"email": f"{bad[0]!r} is not a mail address"})
        if secret:
            raise InvalidInput({"secret": "only a webhook channel has a secret"})
        return addresses, ", ".join(addresses)
    if not isinstance(target, str):
        raise InvalidInput({kind: "must be one http:// or https:// URL"})
    parts = split_url(target.strip())
    if not URL.fullmatch(target.strip()) or parts is None or not parts.hostname:
        raise InvalidInput({kind: "must be an http:// or https:// URL without a user name or password in it"})
    if kind == "slack" and secret:
        raise InvalidInput({"secret": "only a webhook channel has a secret"})
    if secret is not None and not 16 <= len(secret) <= 200:
        raise InvalidInput({"secret": "must be 16 to 200 characters"})
    return target.strip(), f"{parts.scheme}://{parts.netloc}/…"


async def add(
    engine: AsyncEngine,
    sealer: Sealer,
    name: str,
    kind: str,
    target: list[str] | str,
    secret: str | None,
    actor: str,
) -> dict[str, Any]:
    """Make a channel; a name already taken is a conflict (remove it first: a channel is never
    overwritten by accident)."""
    clean, summary = check(name, kind, target, secret)
    row = {
        "name": name,
        "kind": kind,
        "sealed": sealer.seal({"target": clean, "secret": secret}),
        "summary": summary,
        "created_by": actor,
        "created_at": utcnow(),
    }
    try:
        async with writing(engine) as conn:
            await conn.execute(insert(t.channels).values(**row))
    except IntegrityError:
        raise Conflict(f"A channel named {name} exists already: remove it first to replace it.") from None
    return public(row)


def public(row: Any) -> dict[str, Any]:
    """A channel as the list shows it: never its URL's path or its secret."""
    get = row.get if isinstance(row, dict) else row._mapping.get
    made = get("created_at")
    return {
        "name": get("name"),
        "kind": get("kind"),
        "target": get("summary"),
        "created_by": get("created_by"),
        "created_at": iso(made),
    }


async def listing(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with reading(engine) as conn:
        rows = (await conn.execute(select(t.channels).order_by(t.channels.c.name))).all()
    return [public(r) for r in rows]


async def remove(engine: AsyncEngine, name: str) -> None:
    async with writing(engine) as conn:
        gone = await conn.execute(delete(t.channels).where(t.channels.c.name == name))
    if not gone.rowcount:
        raise ChannelNotFound(f"No channel is named {name}.")


async def load(engine: AsyncEngine, sealer: Sealer, name: str) -> Channel:
    async with reading(engine) as conn:
        row = (await conn.execute(select(t.channels).where(t.channels.c.name == name))).first()
    if row is None:
        raise ChannelNotFound(f"No channel is named {name}: make it with `orchestrator channels add {name} ...`.")
    opened = sealer.open(row.sealed)
    return Channel(row.name, row.kind, opened["target"], opened.get("secret"))
