"""Secret defaults in a runbook file are never read over HTTP: not in its definition, its source, its
version diffs or its page; every line of the shown source keeps its number."""

from __future__ import annotations

import html

from orchestrator import jobs
from tests.integration.conftest import Env, http_client

V1 = """
name: vault
title: Vault
inputs:
  user: {type: string, default: operator-name}
  plain:
    type: string
    secret: true
    default: plain-secret-value
  flow: {type: string, secret: true, default: "flow secret value"}
  block:
    secret: true
    default: |
      block-secret-first
      block-secret-second
  unused: {type: string, secret: true}
schedule:
  cron: "0 6 * * *"
  inputs: {unused: schedule-secret-value, user: scheduled-user}
steps:
  - {id: note, action: set, values: {user: "{{ inputs.user }}"}}
outputs:
  plain_length: "{{ inputs.plain | length }}"
  flow_length: "{{ inputs.flow | length }}"
""".lstrip()
V2 = V1.replace("title: Vault", "title: Vault, second edition").replace("plain-secret-value", "plain-secret-changed")
SECRETS = [
    "plain-secret-value",
    "plain-secret-changed",
    "flow secret value",
    "block-secret-first",
    "block-secret-second",
    "schedule-secret-value",
]


async def two_versions(env: Env) -> None:
    env.write(V1)
    await env.svc.catalog.refresh(force=True)
    env.write(V2)
    await env.svc.catalog.refresh(force=True)
    assert (await env.svc.catalog.get("vault")).number == 2


async def everything_a_reader_sees(env: Env, role: str) -> dict[str, str]:
    """Every answer about the runbook this role may read, as text a person (or a script) reads."""
    async with http_client(env.settings, role=role) as http:
        answers = {
            "definition": await http.get("/api/v1/runbooks/vault"),
            "list": await http.get("/api/v1/runbooks"),
            "versions": await http.get("/api/v1/runbooks/vault/versions"),
            "schedules": await http.get("/api/v1/schedules"),
            "page": await http.get("/runbooks/vault", headers={"Accept": "text/html"}),
            "list page": await http.get("/runbooks", headers={"Accept": "text/html"}),
        }
    for name, answer in answers.items():
        assert answer.status_code == 200, (name, answer.status_code, answer.text[:300])
    return {name: html.unescape(answer.text) for name, answer in answers.items()}


async def test_a_viewer_never_reads_a_secret_default_in_the_definition_source_diff_or_page(env: Env) -> None:
    await two_versions(env)
    seen = await everything_a_reader_sees(env, "viewer")
    for name, text in seen.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} is readable in the {name}"
    assert "operator-name" in seen["definition"] and "scheduled-user" in seen["page"]  # only secrets are masked
    assert "********" in seen["versions"] and "********" in seen["page"]


async def test_the_shown_source_keeps_every_line_where_the_file_has_it(env: Env) -> None:
    await two_versions(env)
    async with http_client(env.settings, role="viewer") as http:
        versions = (await http.get("/api/v1/runbooks/vault/versions")).json()["items"]
    for version, text, secret in zip(versions, [V2, V1], ["plain-secret-changed", "plain-secret-value"], strict=True):
        shown, original = version["source"].splitlines(), text.splitlines()
        assert len(shown) == len(original)
        masked = [n for n, (a, b) in enumerate(zip(original, shown, strict=True), start=1) if a != b]
        assert masked == [8, 9, 12, 13, 14, 18], masked  # plain, flow, the block scalar (3 lines), the schedule
        assert original[7] == f"    default: {secret}" and shown[7] == '    default: "********"'
    diff = versions[0]["diff"].splitlines()
    assert "-title: Vault" in diff and "+title: Vault, second edition" in diff
    assert not [line for line in diff if line.startswith(("+", "-")) and "default" in line]  # masked alike


async def test_nobody_reads_them_over_http_not_even_an_admin(env: Env) -> None:
    await two_versions(env)
    seen = await everything_a_reader_sees(env, "admin")
    for name, text in seen.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} is readable in the {name}"


async def test_a_job_still_runs_with_the_secret_defaults(env: Env) -> None:
    await two_versions(env)
    job, created = await jobs.create(env.svc, "vault", jobs.JobRequest(inputs={}))
    assert created
    await env.work()
    done = await jobs.get(env.svc, job["id"])
    assert done["status"] == "completed", done["error"]
    assert done["outputs"] == {"plain_length": len("plain-secret-changed"), "flow_length": len("flow secret value")}
