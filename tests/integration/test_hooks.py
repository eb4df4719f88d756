"""Webhooks: a secret URL per runbook, made by an admin, that starts jobs with the posted inputs."""

from __future__ import annotations

import subprocess

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
