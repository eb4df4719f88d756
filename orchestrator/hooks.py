"""Webhooks: a secret token per runbook that starts a job of it (source `webhook`) with the posted inputs.
The caller sends the token as `Authorization: Bearer orch_hook_...` to POST /api/v1/hooks (or in the
path, POST /api/v1/hooks/{token}, which access logs record redacted). Only a SHA-256 of each token is
stored; the token is shown once, when the hook is made. A hook's jobs belong to the human who made it,
and the hook stops working while that user is disabled."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.auth import live_secret, owner_enabled, secret_hash
from orchestrator.db import tables as t
from orchestrator.db.engine import reading, writing
from orchestrator.db.tables import utcnow
from orchestrator.views import iso

PREFIX = "orch_hook_"
#: Where a hook is called with its token in the Authorization header.
PATH = "/api/v1/hooks"


def path_of(token: str) -> str:
    return f"{PATH}/{token}"


async def create(engine: AsyncEngine, runbook: str, created_by: str, owner: str | None = None) -> tuple[str, str]:
    """A new hook of `runbook` whose jobs belong to `owner` (the maker's Principal.human): (its id, its token)."""
    hook_id, token = secrets.token_hex(8), PREFIX + secrets.token_urlsafe(32)
    async with writing(engine) as conn:
        await conn.execute(
            insert(t.hooks).values(
                id=hook_id,
                runbook=runbook,
                token_hash=secret_hash(token),
                created_by=created_by,
                owner=owner,
                created_at=utcnow(),
            )
        )
    return hook_id, token


async def find(engine: AsyncEngine, token: str) -> dict[str, Any] | None:
    """The live hook of this token: id, runbook, owner. None for an unknown or revoked hook, one whose
    owner is disabled, or a string that is not a hook token at all."""
    columns = (t.hooks.c.id, t.hooks.c.runbook, t.hooks.c.owner, owner_enabled(t.hooks).label("enabled"))
    row = await live_secret(engine, t.hooks, PREFIX, token, *columns)
    if row is None or not row.enabled:
        return None
    return {"id": row.id, "runbook": row.runbook, "owner": row.owner}


async def listed(engine: AsyncEngine, runbook: str) -> list[dict[str, Any]]:
    async with reading(engine) as conn:
        rows = await conn.execute(select(t.hooks).where(t.hooks.c.runbook == runbook).order_by(t.hooks.c.created_at))
        return [
            {
                "id": r.id,
                "runbook": r.runbook,
                "created_by": r.created_by,
                "owner": r.owner,
                "created_at": iso(r.created_at),
                "revoked_at": iso(r.revoked_at),
            }
            for r in rows
        ]


async def revoke(engine: AsyncEngine, runbook: str, hook_id: str) -> bool:
    async with writing(engine) as conn:
        changed = await conn.execute(
            update(t.hooks)
            .where(t.hooks.c.id == hook_id, t.hooks.c.runbook == runbook, t.hooks.c.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        return changed.rowcount == 1
