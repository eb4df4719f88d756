"""The worker's claim reads its job row straight from the SQLite driver (orchestrator/db/driver.py DriverRead):
every column must come back exactly as SQLAlchemy gives it, whatever the row holds."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from orchestrator.db import tables as t
from orchestrator.db.engine import create_sqlite_sync_engine, writing
from orchestrator.db.tables import utcnow
from tests.integration.conftest import Env
from worker.resume import SELECT_JOB, select_job

FLOW = """
name: flow
inputs:
  name: {type: string, default: Initech}
steps:
  - {id: first, action: set, values: {a: 1}}
"""


async def test_the_driver_read_of_a_job_row_equals_sqlalchemy_s(env: Env) -> None:
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
    engine = create_sqlite_sync_engine(env.settings.database_url)
    try:
        with engine.connect() as conn:
            for job_id in (plain["id"], full["id"]):
                by_driver = select_job(conn, job_id)
                by_sqlalchemy = dict(conn.execute(SELECT_JOB, {"b_id": job_id}).mappings().one())
                assert by_driver == by_sqlalchemy
                assert {k: type(v) for k, v in by_driver.items()} == {k: type(v) for k, v in by_sqlalchemy.items()}
            assert select_job(conn, "no-such-job") is None
    finally:
        engine.dispose()
