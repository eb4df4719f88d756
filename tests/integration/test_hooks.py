"""Webhooks: a secret URL per runbook, made by an admin, that starts jobs with the posted inputs."""

from __future__ import annotations

import os
import pwd
import subprocess

from sqlalchemy import select

from orchestrator import auth, hooks
from orchestrator.db import tables as t
from orchestrator.db.engine import reading
from tests.integration.conftest import Env, http_client
from tests.support import ROOT

RUNBOOK = """
name: hooked
inputs:
  order: {type: string, required: true}
steps:
  - {id: one, action: set, values: {got: "{{ inputs.order }}"}}
"""


async def test_an_admin_makes_a_hook_that_starts_jobs_with_the_posted_inputs(env: Env) -> None:
    env.write(RUNBOOK)
    async with http_client(env.settings, role="operator") as operator:
        assert (await operator.post("/api/v1/runbooks/hooked/hooks")).status_code == 403
    async with http_client(env.settings) as admin:
        made = await admin.post("/api/v1/runbooks/hooked/hooks")
        assert made.status_code == 201, made.text
        hook = made.json()
        assert hook["url"] == f"/api/v1/hooks/{hook['token']}"
        listed = (await admin.get("/api/v1/runbooks/hooked/hooks")).json()["items"]
        assert [h["id"] for h in listed] == [hook["id"]] and hook["token"] not in str(listed)
        assert (await admin.post("/api/v1/runbooks/nope/hooks")).status_code == 404
    async with http_client(env.settings, role=None) as anyone:  # the token is the only credential
        started = await anyone.post(hook["url"], json={"order": "A-1"})
        assert started.status_code == 201, started.text
        job = started.json()
        assert (job["source"], job["created_by"], job["inputs"]) == ("webhook", f"hook:{hook['id']}", {"order": "A-1"})
        again = await anyone.post(hook["url"], json={"order": "A-2"}, headers={"Idempotency-Key": "k1"})
        same = await anyone.post(hook["url"], json={"order": "A-2"}, headers={"Idempotency-Key": "k1"})
        assert (again.status_code, same.status_code, same.json()["id"]) == (201, 200, again.json()["id"])
        bad = await anyone.post(hook["url"], json={"orders": "x"})
        assert bad.status_code == 422 and "order" in bad.json()["fields"]
        wrong = await anyone.post(hook["url"][:-3] + "xyz", json={"order": "A-3"})
        assert wrong.status_code == 404
    async with http_client(env.settings) as admin:
        assert (await admin.delete(f"/api/v1/runbooks/hooked/hooks/{hook['id']}")).status_code == 204
        assert (await admin.post(hook["url"], json={"order": "A-4"})).status_code == 404
    database = (env.settings.data_dir / "orchestrator.db").read_bytes()
    wal = env.settings.data_dir / "orchestrator.db-wal"
    assert hook["token"].encode() not in database + (wal.read_bytes() if wal.exists() else b"")


def test_hooks_are_made_listed_and_revoked_from_the_command_line(env: Env) -> None:
    cli = [str(ROOT / ".venv" / "bin" / "orchestrator"), "hooks"]
    environment = {
        "ORCH_DATABASE_URL": env.settings.database_url,
        "ORCH_DATA_DIR": str(env.settings.data_dir),
        "ORCH_SECRET_KEY": env.settings.secret_key,
        "PATH": "/usr/bin:/bin",
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], env=environment, capture_output=True, text=True, timeout=60, check=False)

    made = run("create", "hooked")
    assert made.returncode == 0, made.stderr
    path = made.stdout.strip().splitlines()[-1]
    assert path.startswith("/api/v1/hooks/orch_hook_")
    hook_id = run("list", "hooked").stdout.split("\t")[0]
    assert run("list", "hooked").stdout.strip().endswith("active")
    assert run("revoke", "hooked", hook_id).returncode == 0
    assert run("list", "hooked").stdout.strip().endswith("revoked")
    assert run("revoke", "hooked", hook_id).returncode == 1


async def test_a_hook_token_may_travel_in_the_authorization_header_instead_of_the_path(env: Env) -> None:
    env.write(RUNBOOK)
    async with http_client(env.settings) as admin:
        hook = (await admin.post("/api/v1/runbooks/hooked/hooks")).json()
        api_token = admin.headers["Authorization"]
    async with http_client(env.settings, role=None) as anyone:
        started = await anyone.post(
            "/api/v1/hooks", json={"order": "H-1"}, headers={"Authorization": f"Bearer {hook['token']}"}
        )
        assert started.status_code == 201, started.text
        assert (started.json()["source"], started.json()["inputs"]) == ("webhook", {"order": "H-1"})
        bare = await anyone.post("/api/v1/hooks", json={"order": "H-2"})
        assert bare.status_code == 401 and "Authorization: Bearer" in bare.json()["error"]
        not_a_hook = await anyone.post("/api/v1/hooks", json={"order": "H-3"}, headers={"Authorization": api_token})
        assert not_a_hook.status_code == 401
    async with http_client(env.settings) as admin:
        assert (await admin.delete(f"/api/v1/runbooks/hooked/hooks/{hook['id']}")).status_code == 204
    async with http_client(env.settings, role=None) as anyone:
        revoked = await anyone.post(
            "/api/v1/hooks", json={"order": "H-4"}, headers={"Authorization": f"Bearer {hook['token']}"}
        )
        assert revoked.status_code == 401


async def test_a_hook_remembers_the_human_who_made_it_and_its_jobs_are_theirs(env: Env) -> None:
    env.write(RUNBOOK)
    await auth.add_user(env.svc.engine, "alice", "admin", "alice-password")
    token = await auth.create_token(env.svc.engine, "alice-admin", "admin", created_by="tests", owner="alice")
    async with http_client(env.settings, role=None) as client:
        made = await client.post("/api/v1/runbooks/hooked/hooks", headers={"Authorization": f"Bearer {token}"})
        assert made.status_code == 201, made.text
        hook = made.json()
        found = await hooks.find(env.svc.engine, hook["token"])
        assert found is not None and found["owner"] == "alice"
        started = await client.post(hook["url"], json={"order": "O-1"})
        assert started.status_code == 201, started.text
    async with reading(env.svc.engine) as conn:
        owner = (await conn.execute(select(t.jobs.c.owner).where(t.jobs.c.id == started.json()["id"]))).scalar()
    assert owner == "alice"
    await auth.set_disabled(env.svc.engine, "alice", True)  # a disabled user's hooks stop, as their tokens do
    async with http_client(env.settings, role=None) as client:
        assert (await client.post(hook["url"], json={"order": "O-2"})).status_code == 404


async def test_a_hook_made_on_the_command_line_is_owned_by_the_operator_who_made_it(env: Env) -> None:
    environment = {
        "ORCH_DATABASE_URL": env.settings.database_url,
        "ORCH_DATA_DIR": str(env.settings.data_dir),
        "ORCH_SECRET_KEY": env.settings.secret_key,
        "PATH": "/usr/bin:/bin",
    }
    made = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "orchestrator"), "hooks", "create", "hooked"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1].rsplit("/", 1)[-1]
    found = await hooks.find(env.svc.engine, token)
    assert found is not None and found["owner"] == f"cli:{pwd.getpwuid(os.getuid()).pw_name}"
