"""Accounts from the command line: a disabled user is out at once (sessions, tokens they own, sign-in),
expired sessions are purged, and every principal names the human behind it (a token's owner)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
from sqlalchemy import func, select, update

from orchestrator import auth
from orchestrator.db import tables as t
from orchestrator.db.engine import reading, writing
from orchestrator.db.tables import utcnow
from tests.integration.conftest import Env, live_server
from tests.support import ROOT

PASSWORD = "correct horse battery staple"
QUICK = """
name: quick
steps:
  - {id: one, action: set, values: {a: 1}}
"""


def orchestrator(env: Env, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`orchestrator ARGS...` on this test's database, as an admin types it (`stdin`: what they type in)."""
    environment = {
        "ORCH_DATABASE_URL": env.settings.database_url,
        "ORCH_DATA_DIR": str(env.settings.data_dir),
        "ORCH_SECRET_KEY": env.settings.secret_key,
        "PATH": "/usr/bin:/bin",
    }
    command = [str(ROOT / ".venv" / "bin" / "orchestrator"), *args]
    return subprocess.run(
        command, env=environment, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


@contextlib.asynccontextmanager
async def signed_in(url: str, username: str, password: str = PASSWORD) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client signed in through the login form."""
    async with httpx.AsyncClient(base_url=url, timeout=30, follow_redirects=False) as client:
        answer = await client.post("/login", data={"username": username, "password": password}, headers={"Origin": url})
        assert answer.status_code == 303, answer.text
        yield client


def with_token(url: str, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"})


async def test_disabling_a_user_ends_their_sessions_and_tokens_at_once_and_enabling_lets_them_back(env: Env) -> None:
    for name in ("bob", "carol"):
        await auth.add_user(env.svc.engine, name, "operator", PASSWORD)
    bobs = orchestrator(env, "tokens", "create", "bob", "--role", "operator")  # owner: the user named bob
    service = orchestrator(env, "tokens", "create", "ci", "--role", "operator")  # nobody's
    assert bobs.returncode == 0 and service.returncode == 0, bobs.stderr + service.stderr
    bob_token, ci_token = bobs.stdout.splitlines()[-1], service.stdout.splitlines()[-1]
    async with (
        live_server(env.settings) as url,
        signed_in(url, "bob") as bob,
        signed_in(url, "carol") as carol,
        with_token(url, bob_token) as bob_api,
        with_token(url, ci_token) as ci,
    ):
        for client in (bob, carol, bob_api, ci):
            assert (await client.get("/api/v1/jobs")).status_code == 200

        disabled = orchestrator(env, "users", "disable", "bob")
        assert disabled.returncode == 0, disabled.stderr
        assert (await bob.get("/api/v1/jobs")).status_code == 401
        assert (await bob.get("/jobs", headers={"Accept": "text/html"})).status_code == 303  # to /login
        assert (await bob_api.get("/api/v1/jobs")).status_code == 401
        assert (await carol.get("/api/v1/jobs")).status_code == 200
        assert (await ci.get("/api/v1/jobs")).status_code == 200
        refused = await bob.post("/login", data={"username": "bob", "password": PASSWORD}, headers={"Origin": url})
        assert refused.status_code == 403 and "disabled" in refused.text
        wrong = await bob.post("/login", data={"username": "bob", "password": "not-his-pw"}, headers={"Origin": url})
        assert wrong.status_code == 401 and "disabled" not in wrong.text  # says nothing without the password
        listed = orchestrator(env, "users", "list").stdout.splitlines()
        assert "bob\toperator\tdisabled" in listed and "carol\toperator\tactive" in listed

        enabled = orchestrator(env, "users", "enable", "bob")
        assert enabled.returncode == 0, enabled.stderr
        assert (await bob.get("/api/v1/jobs")).status_code == 401  # the old session stays ended
        assert (await bob_api.get("/api/v1/jobs")).status_code == 200
        async with signed_in(url, "bob") as again:
            assert (await again.get("/api/v1/jobs")).status_code == 200
    unknown = orchestrator(env, "users", "disable", "nobody")
    assert unknown.returncode == 1 and "nobody" in unknown.stderr


async def test_purge_sessions_removes_the_expired_ones_only(env: Env) -> None:
    await auth.add_user(env.svc.engine, "dora", "viewer", PASSWORD)
    opened = [await auth.login(env.svc.engine, "dora", PASSWORD) for _ in range(3)]
    assert all(opened)
    expired, kept = [o[1] for o in opened[:2] if o], opened[2][1] if opened[2] else ""
    async with writing(env.svc.engine) as conn:
        await conn.execute(
            update(t.sessions)
            .where(t.sessions.c.id.in_([auth.secret_hash(s) for s in expired]))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert await auth.purge_sessions(env.svc.engine) == 2
    assert await auth.purge_sessions(env.svc.engine) == 0
    async with reading(env.svc.engine) as conn:
        assert (await conn.execute(select(func.count()).select_from(t.sessions))).scalar() == 1
    assert await auth.session_principal(env.svc.engine, kept) is not None


async def test_a_token_acts_for_its_owner_and_tokens_list_shows_who_that_is(env: Env) -> None:
    env.write(QUICK)
    await auth.add_user(env.svc.engine, "alice", "approver", PASSWORD)
    made = {
        name: orchestrator(env, "tokens", "create", name, "--role", "operator", *extra)
        for name, extra in (("alice-ci", ("--owner", "alice")), ("alice", ()), ("robot", ()))
    }
    assert all(m.returncode == 0 for m in made.values()), [m.stderr for m in made.values()]
    token = {name: m.stdout.splitlines()[-1] for name, m in made.items()}
    nobody = orchestrator(env, "tokens", "create", "x", "--role", "viewer", "--owner", "nobody")
    assert nobody.returncode == 1 and "owner" in nobody.stderr and "nobody" in nobody.stderr
    rows = [line.split("\t") for line in orchestrator(env, "tokens", "list").stdout.splitlines()]
    assert {r[1]: (r[2], r[3], r[4]) for r in rows} == {
        "alice-ci": ("operator", "active", "alice"),
        "alice": ("operator", "active", "alice"),
        "robot": ("operator", "active", "-"),
    }

    humans = {name: await auth.token_principal(env.svc.engine, value) for name, value in token.items()}
    assert {name: p.human if p else None for name, p in humans.items()} == {
        "alice-ci": "alice",
        "alice": "alice",
        "robot": "token:robot",
    }
    signed = await auth.login(env.svc.engine, "alice", PASSWORD)
    assert signed is not None and signed[0].human == "alice"
    assert auth.Principal("ops", "admin", "cli").human == "cli:ops"

    async with live_server(env.settings) as url, with_token(url, token["alice-ci"]) as client:
        started = await client.post("/api/v1/runbooks/quick/jobs", json={})
        assert started.status_code == 201, started.text
    async with reading(env.svc.engine) as conn:
        row = (await conn.execute(select(t.jobs.c.created_by, t.jobs.c.owner))).one()
    assert (row.created_by, row.owner) == ("token:alice-ci", "alice")


async def test_a_token_whose_owner_is_disabled_is_refused(env: Env) -> None:
    await auth.add_user(env.svc.engine, "erin", "operator", PASSWORD)
    token = await auth.create_token(env.svc.engine, "erin-ci", "operator", created_by="tests", owner="erin")
    assert await auth.token_principal(env.svc.engine, token) is not None
    await auth.set_disabled(env.svc.engine, "erin", True)
    assert await auth.token_principal(env.svc.engine, token) is None
