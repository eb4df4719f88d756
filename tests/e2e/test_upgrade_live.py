"""Upgrading the database while jobs run (issue 18, item 9; README: Deployment): with web, worker and
scheduler running on PostgreSQL and a job waiting for approval, `orchestrator db upgrade` with nothing
to do takes no lock the running processes need, and one that applies a migration goes through while
they run; the job is approved afterwards and completes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import httpx
from alembic import command
from alembic.script import ScriptDirectory

from orchestrator.db.migrate import alembic_config
from tests.e2e.cluster import Cluster, cluster, job_in

RUNBOOK = """
name: gate
steps:
  - {id: before, action: set, values: {a: 1}}
  - {id: sign-off, action: approval, message: "Ship it?"}
  - {id: after, action: set, values: {b: 2}}
"""


def head() -> str:
    revision = ScriptDirectory.from_config(alembic_config("postgresql://unused")).get_current_head()
    assert revision is not None
    return revision


async def revision(c: Cluster) -> str:
    [row] = await c.rows("SELECT version_num FROM alembic_version")
    return str(row["version_num"])


async def test_the_database_is_upgraded_while_a_job_waits_for_approval(tmp_path: Path) -> None:
    async with cluster(tmp_path, {"gate": RUNBOOK}) as c:
        web = await c.web("web")
        c.start("worker", "worker")
        c.start("scheduler", "scheduler")
        runner = httpx.AsyncClient(base_url=web, headers={"Authorization": f"Bearer {c.token('operator')}"})
        approver = httpx.AsyncClient(base_url=web, headers={"Authorization": f"Bearer {c.token('approver')}"})
        async with runner, approver:
            created = await runner.post("/api/v1/runbooks/gate/jobs", json={})
            assert created.status_code == 201, created.text
            job_id = created.json()["id"]
            await job_in(runner, job_id, "waiting_for_approval")

            # nothing to do: the upgrade neither waits for nor blocks the running processes, even
            # while a transaction of theirs holds the jobs table (here: this test's, left open)
            assert await revision(c) == head()
            holder = await asyncpg.connect(c.database_url.replace("postgresql+asyncpg://", "postgresql://"))
            try:
                await holder.execute("BEGIN; SELECT count(*) FROM jobs")
                nothing = await asyncio.to_thread(c.cli, "db", "upgrade", timeout=60)
                assert nothing.returncode == 0, nothing.stderr
                assert "database is up to date" in nothing.stdout
                assert (await runner.get(f"/api/v1/jobs/{job_id}")).json()["status"] == "waiting_for_approval"
            finally:
                await holder.close()

            # a release behind: the last migration undone, then applied by the upgrade, all running
            url = c.database_url
            await asyncio.to_thread(command.downgrade, alembic_config(url), "-1")
            assert await revision(c) != head()
            applied = await asyncio.to_thread(c.cli, "db", "upgrade", timeout=120)
            assert applied.returncode == 0, (applied.stderr, c.logs())
            assert await revision(c) == head()

            approved = await approver.post(f"/api/v1/jobs/{job_id}/approve", json={"comment": "after the upgrade"})
            assert approved.status_code == 200, (approved.text, c.logs())
            done = await job_in(runner, job_id, "completed", "failed")
        assert done["status"] == "completed", (done["error"], c.logs())
        assert [s["status"] for s in done["steps"]] == ["success"] * 3
        assert all(child.poll() is None for child in c.children.values()), c.logs()  # nobody restarted
