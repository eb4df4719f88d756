"""The worker's claim reads its job row straight from the driver (orchestrator/db/driver.py DriverRead), on
SQLite and on asyncpg: every column must come back exactly as SQLAlchemy gives it, whatever the row holds."""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, update

from orchestrator.db import tables as t
from orchestrator.db.engine import writing
from orchestrator.db.tables import utcnow
from tests.integration.conftest import Env
from worker.committer import Committer
from worker.resume import SELECT_JOB, select_job

FLOW = """
name: flow
inputs:
  name: {type: string, default: Initech}
steps:
  - {id: first, action: set, values: {a: 1}}
"""


async def filled(env: Env) -> tuple[str, str]:
    """Two jobs: one as created, one with every kind of column filled in."""
    env.write(FLOW)
    plain = await env.create("flow")
    full = await env.create("flow", {"name": "Ünïcode ✓"})
    async with writing(env.svc.engine) as conn:
        await conn.execute(
            update(t.jobs)
            .where(t.jobs.c.id == full["id"])
            .values(
                started_at=utcnow() - timedelta(seconds=3),
                finished_at=utcnow(),
                duration_s=2.5,
                warnings=True,
                approval={"step_id": "first", "decision": "approved", "nested": [1, None, {"x": "y"}]},
                checkpoint=None,
                tags=["a", "b"],
                summary="done",
            )
        )
    return plain["id"], full["id"]


def both(conn: Connection, job_id: str) -> tuple[Any, Any]:
    """The row by the driver, and by SQLAlchemy."""
    return select_job(conn, job_id), conn.execute(SELECT_JOB, {"b_id": job_id}).mappings().first()


async def test_the_driver_read_of_a_job_row_equals_sqlalchemy_s(any_db_env: Env) -> None:
    """Read on the worker's own read connections (worker/committer.py Committer.read): SQLite's,
    and asyncpg's on PostgreSQL."""
    committer = Committer(any_db_env.svc.engine, any_db_env.svc.redis)
    try:
        for job_id in await filled(any_db_env):
            by_driver, by_sqlalchemy = await committer.read(functools.partial(both, job_id=job_id))
            assert by_driver == dict(by_sqlalchemy)
            assert {k: type(v) for k, v in by_driver.items()} == {k: type(v) for k, v in by_sqlalchemy.items()}
        assert await committer.read(functools.partial(both, job_id="no-such-job")) == (None, None)
    finally:
        await committer.stop()
