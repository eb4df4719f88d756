"""The pieces a live page fetches (GET /jobs/{id}/parts, GET /jobs/rows): refused as their page is,
each the same markup alone as in the full page, and hostile or secret values escaped and masked."""

from __future__ import annotations

import html
import re

import pytest

from orchestrator import auth
from tests.integration.conftest import Env, http_client, step
from web import fragments

PAGE = {"Accept": "text/html"}

PIECES = """
name: pieces
inputs:
  pin: {type: string, secret: true}
  rows: {type: records}
steps:
  - {id: keep, name: "<b>bold</b> & \\"quoted\\"", action: set,
     values: {evil: "<script>window.__xss=1</script>", pin: "{{ inputs.pin }}"}}
  - id: loop
    action: for_each
    items: "{{ inputs.rows }}"
    record_id: "{{ record.id }}"
    record_name: "{{ record.name }}"
    steps:
      - {id: each, action: set, values: {next: "{{ record.value + 1 }}"}}
  - {id: out, action: export, format: json, data: "{{ captured }}", filename: "<i>out</i>.json"}
  - {id: broken, action: set, values: {x: "{{ captured.nope.deeper }}"}, continue_on_error: true}
"""
PIN = "pin-4711-<secret>"
ROWS = [
    {"id": "r1", "name": "<img src=x onerror=alert(1)>", "value": 1},
    {"id": "r2", "name": "plain", "value": "not a number"},
]


def inside_templates(text: str) -> list[str]:
    return re.findall(r"<template>(.*?)</template>", text, flags=re.S)


async def test_pieces_are_refused_as_their_page_is(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    # every role here may view jobs; one that may not (as SPEC's `metrics`) is refused pages and pieces alike
    monkeypatch.setitem(auth.ROLES, "outsider", frozenset({"metrics:read"}))
    env.write("name: quiet\nsteps:\n  - {id: one, action: set, values: {a: 1}}\n")
    job = await env.create("quiet")
    page, parts, rows = f"/jobs/{job['id']}", f"/jobs/{job['id']}/parts?part=head", "/jobs/rows?tab=all"
    async with http_client(env.settings, role=None) as anonymous:
        assert (await anonymous.get(page, headers=PAGE)).status_code == 303  # to sign in
        for piece in (parts, rows):
            assert (await anonymous.get(piece, headers=PAGE)).status_code == 401  # a script gets no login page
    async with http_client(env.settings, role="outsider") as outsider:
        for path in (page, parts, rows):
            answer = await outsider.get(path, headers=PAGE)
            assert answer.status_code == 403 and "job:view" in answer.text, path
        assert "Approval required" not in (await outsider.get(parts)).text
    async with http_client(env.settings, role="viewer") as viewer:
        assert (await viewer.get(parts)).status_code == 200
        assert (await viewer.get("/jobs/nope", headers=PAGE)).status_code == 404
        assert (await viewer.get("/jobs/nope/parts?part=head")).status_code == 404
        bad = await viewer.get(f"{page}/parts?part=head&part=nonsense&status=lost&limit=0")
        assert bad.status_code == 422 and set(bad.json()["fields"]) == {"part", "status", "limit"}
        assert (await viewer.get(f"{page}/parts")).status_code == 422  # no piece asked for


async def test_each_piece_is_the_same_alone_as_in_the_page_with_hostile_values_escaped(env: Env) -> None:
    done = await env.run(PIECES, {"pin": PIN, "rows": ROWS})
    assert done["status"] == "completed" and step(done, "broken")["status"] == "failed"
    assert done["record_counts"]["failed"] == 1
    [export] = done["artifacts"]
    keys = [
        "head",
        "approval",
        "metrics",
        "steps",
        "step:keep",
        "step:broken",
        "children",
        "records",
        "records-more",
        "record:1",
        "record:2",
        "io",
        "artifacts",
        f"artifact:{export['id']}",
        "artifacts:out",
        "video",
        "audit",
    ]
    async with http_client(env.settings, role="operator") as http:
        page = (await http.get(f"/jobs/{done['id']}", headers=PAGE)).text
        answer = await http.get(f"/jobs/{done['id']}/parts", params=[("part", k) for k in keys])
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    assert answer.headers["cache-control"] == "no-store"
    found = inside_templates(answer.text)
    assert len(found) == len(keys)  # artifacts:out is the one file of step `out`
    for key, piece in zip(keys, found, strict=True):
        assert piece.strip(), key
        assert piece in page, f"piece {key} differs from the page's:\n{piece}"
    assert 'data-part="step:keep"' in found[4] and 'data-action="rerun"' in found[0]
    assert 'data-query="records=failed"' in found[0]  # a failed record: re-run those
    text = answer.text
    for raw in ("<script>window.__xss", "<img src=x", "<b>bold</b>", "<i>out</i>", PIN, html.escape(PIN)):
        assert raw not in text and raw not in page, raw
    unescaped = html.unescape(text)
    for shown in ("<script>window.__xss=1</script>", "<img src=x onerror=alert(1)>", '<b>bold</b> & "quoted"'):
        assert shown in unescaped, shown
    assert "********" in found[keys.index("io")] and "********" in found[keys.index("step:keep")]


async def test_a_piece_of_a_step_or_record_is_that_one_and_the_records_follow_the_tables_query(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = await env.run(PIECES, {"pin": PIN, "rows": ROWS})

    async def whole_job(*args: object) -> None:
        raise AssertionError("what a running job's events ask for is read alone, not from the whole job")

    monkeypatch.setattr(fragments, "job_view", whole_job)
    async with http_client(env.settings, role="viewer") as http:
        hot = "part=step:loop&part=artifacts:out&part=metrics&part=record:2&part=records-more"
        assert len(inside_templates((await http.get(f"/jobs/{done['id']}/parts?{hot}")).text)) == 5
        one = inside_templates((await http.get(f"/jobs/{done['id']}/parts?part=step:loop")).text)
        failed = (await http.get(f"/jobs/{done['id']}/parts?part=records&part=records-more&status=failed")).text
        short = (await http.get(f"/jobs/{done['id']}/parts?part=records&part=records-more&limit=1")).text
        none = (await http.get(f"/jobs/{done['id']}/parts?part=step:missing&part=record:99")).text
    assert len(one) == 1 and one[0].count("data-step-id=") == 1 and 'data-step-id="loop"' in one[0]
    assert re.findall(r'data-sequence="(\d+)"', failed) == ["2"]
    assert "1 of 1 records shown" in failed and re.search(r'data-part="records-more"[^>]* hidden', failed)
    assert re.findall(r'data-sequence="(\d+)"', short) == ["1"] and "1 of 2 records shown" in short
    assert none == ""  # nothing by those keys: nothing to swap


async def test_the_rows_of_a_jobs_table_are_the_same_alone_as_in_the_list(env: Env) -> None:
    env.write("name: listed\nsteps:\n  - {id: one, action: set, values: {a: 1}}\n")
    await auth.add_user(env.svc.engine, "olga", "viewer", "olga-password")
    made = [await env.create("listed") for _ in range(3)]
    async with http_client(env.settings, role="viewer") as http:
        listed = (await http.get("/jobs?tab=running&q=list", headers=PAGE)).text
        rows = inside_templates((await http.get("/jobs/rows?tab=running&q=list")).text)
        history = (await http.get("/runbooks/listed", headers=PAGE)).text
        url = html.unescape(re.search(r'data-rows="([^"]+)"', history).group(1))
        recent = inside_templates((await http.get(url)).text)
        empty = inside_templates((await http.get("/jobs/rows?tab=failed")).text)
    assert len(rows) == 1 and rows[0] in listed
    assert set(re.findall(r'data-job-id="(\w+)"', rows[0])) == {j["id"] for j in made}
    assert len(recent) == 1 and recent[0] in history and "view=runbook" in url
    assert "No jobs match these filters." in empty[0]


async def test_a_piece_of_the_whole_job_is_rendered_once_however_often_it_is_asked(env: Env) -> None:
    """`io:0 … io:99` or `records:0 … records:99` is one piece, not a hundred renderings of the job."""
    done = await env.run(PIECES, {"pin": PIN, "rows": ROWS})
    async with http_client(env.settings, role="viewer") as http:
        many = "&".join(f"part=io:{n}&part=records:{n}" for n in range(50))
        pieces = inside_templates((await http.get(f"/jobs/{done['id']}/parts?{many}")).text)
        two_steps = inside_templates((await http.get(f"/jobs/{done['id']}/parts?part=step:keep&part=step:loop")).text)
    assert len(pieces) == 2
    assert len(two_steps) == 2  # a piece of one item still names the item
