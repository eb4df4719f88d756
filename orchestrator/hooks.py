"""Webhooks: a secret URL per runbook that starts a job of it (source `webhook`) with the posted inputs.
Only a SHA-256 of each token is stored; the token is shown once, when the hook is made."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.auth import live_secret, secret_hash
from orchestrator.db import tables as t
from orchestrator.db.engine import reading, writing
from orchestrator.db.tables import utcnow
from orchestrator.views import iso

PREFIX = "orch_hook_"


def path_of(token: str) -> str:
    return f"/api/v1/hooks/{token}"


async def create(engine: AsyncEngine, runbook: str, created_by: str) -> tuple[str, str]:
    """A new hook of `runbook`: (its id, its token)."""
    hook_id, token = secrets.token_hex(8), PREFIX + secrets.token_urlsafe(32)
    async with writing(engine) as conn:
        await conn.execute(
            insert(t.hooks).values(
                id=hook_id, runbook=runbook, token_hash=secret_hash(token), created_by=created_by, created_at=utcnow()
            )
        )
    return hook_id, token


async def find(engine: AsyncEngine, token: str) -> dict[str, Any] | None:
    """The live hook of this token, or None (unknown, revoked, or not a hook token at all)."""
    row = await live_secret(engine, t.hooks, PREFIX, token, t.hooks.c.id, t.hooks.c.runbook)
    return {"id": row.id, "runbook": row.runbook} if row else None


async def listed(engine: AsyncEngine, runbook: str) -> list[dict[str, Any]]:
    async with reading(engine) as conn:
        rows = await conn.execute(select(t.hooks).where(t.hooks.c.runbook == runbook).order_by(t.hooks.c.created_at))
        return [
            {
                "id": r.id,
                "runbook": r.runbook,
                "created_by": r.created_by,
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
