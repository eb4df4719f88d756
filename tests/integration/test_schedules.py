"""Schedules: the API, pause and resume, catch-up after downtime, overlap, and exact counts with two
real scheduler processes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from playwright.async_api import expect
from sqlalchemy import select, update

from orchestrator import auth, cron, jobs, scheduler, schedules
from orchestrator.db import tables as t
from orchestrator.db.engine import reading, writing
from orchestrator.states import Action
from tests.integration.conftest import Env, http_client, live_server, orch_process
from tests.support import signed_in_page

RUNBOOK = """
name: nightly
inputs:
  region: {type: string, required: true}
  pin: {type: string, secret: true}
steps:
  - {id: one, action: set, values: {region: "{{ inputs.region }}"}}
"""

FILE_SCHEDULED = """
name: morning
schedule:
  cron: "0 6 * * 1-5"
  timezone: Europe/Berlin
  inputs: {}
steps:
  - {id: one, action: set, values: {a: 1}}
"""


def at(iso: str | None) -> datetime:
    assert iso is not None
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


async def made_jobs(env: Env, schedule_id: str) -> list[Any]:
    query = select(t.jobs).where(t.jobs.c.created_by == f"schedule:{schedule_id}").order_by(t.jobs.c.created_at)
    async with reading(env.svc.engine) as conn:
        return list(await conn.execute(query))


async def set_next(env: Env, schedule_id: str, when: datetime) -> None:
    async with writing(env.svc.engine) as conn:
        await conn.execute(update(t.schedules).where(t.schedules.c.id == schedule_id).values(next_fire_at=when))


async def test_schedules_api_validates_creates_pauses_resumes_and_deletes(env: Env) -> None:
    env.write(RUNBOOK)
    env.write(FILE_SCHEDULED)
    async with http_client(env.settings, role="operator") as http:
        bad = await http.post(
            "/api/v1/schedules",
            json={"runbook": "nightly", "cron": "every day", "catch_up": "some", "overlap": 1, "colour": "red"},
        )
        assert bad.status_code == 422
        assert set(bad.json()["fields"]) == {"cron", "catch_up", "overlap", "colour", "inputs.region"}
        zone = await http.post(
            "/api/v1/schedules", json={"runbook": "nightly", "cron": "0 6 * * *", "timezone": "Mars/Base"}
        )
        assert zone.status_code == 422 and "timezone" in zone.json()["fields"]
        missing = await http.post("/api/v1/schedules", json={"runbook": "nope", "cron": "0 6 * * *"})
        assert missing.status_code == 404

        body = {"runbook": "nightly", "cron": "30 2 * * *", "timezone": "Europe/Berlin", "catch_up": "latest"}
        made = await http.post("/api/v1/schedules", json={**body, "inputs": {"region": "eu", "pin": "4321"}})
        assert made.status_code == 201, made.text
        schedule = made.json()
        assert schedule["active"] is True and schedule["previous_trigger"] is None
        assert schedule["inputs"] == {"region": "eu", "pin": "********"}
        expected = cron.next_after("30 2 * * *", "Europe/Berlin", datetime.now(UTC))
        assert at(schedule["next_trigger"]) == expected

        listed = (await http.get("/api/v1/schedules")).json()["items"]
        assert {(s["runbook"], s["origin"]) for s in listed} == {("nightly", "api"), ("morning", "runbook")}
        paused = (await http.patch(schedule["url"], json={"active": False})).json()
        assert paused["active"] is False and paused["next_trigger"] is None
        resumed = (await http.patch(schedule["url"], json={"active": True})).json()
        assert resumed["next_trigger"] == schedule["next_trigger"]
        retimed = await http.patch(schedule["url"], json={"cron": "0 3 * * *", "runbook": "morning"})
        assert retimed.status_code == 422 and set(retimed.json()["fields"]) == {"runbook"}

        [from_file] = [s for s in listed if s["origin"] == "runbook"]
        assert (await http.patch(from_file["url"], json={"cron": "0 7 * * *"})).status_code == 409
        assert (await http.delete(from_file["url"])).status_code == 409
        assert (await http.patch(from_file["url"], json={"active": False})).json()["active"] is False
        page_view = (await http.get("/api/v1/runbooks/morning")).json()["schedule"]
        assert page_view["id"] == from_file["id"] and page_view["active"] is False  # the pause lasts

        assert (await http.delete(schedule["url"])).status_code == 204
        assert (await http.get(schedule["url"])).status_code == 404
    async with http_client(env.settings, role="viewer") as http:
        refused = await http.post("/api/v1/schedules", json={"runbook": "nightly", "cron": "0 6 * * *"})
        assert refused.status_code == 403


async def new_schedule(env: Env, **fields: Any) -> dict[str, Any]:
    env.write(RUNBOOK)
    async with http_client(env.settings, role="operator") as http:
        body = {"runbook": "nightly", "cron": "*/10 * * * *", "inputs": {"region": "eu", "pin": "1"}, **fields}
        made = await http.post("/api/v1/schedules", json=body)
    assert made.status_code == 201, made.text
    return made.json()


def fire_times(rows: list[Any]) -> list[str]:
    return [r.data["fire_time"] for r in rows]


async def test_catch_up_none_drops_the_fire_times_missed_while_down(env: Env) -> None:
    schedule = await new_schedule(env)
    now = datetime(2026, 11, 23, 12, 5, tzinfo=UTC)  # five minutes after a fire time: missed, not late
    await set_next(env, schedule["id"], now - timedelta(hours=1, minutes=5))
    assert await scheduler.tick(env.svc, now) == 0
    assert await made_jobs(env, schedule["id"]) == []
    async with reading(env.svc.engine) as conn:
        row = (await conn.execute(select(t.schedules).where(t.schedules.c.id == schedule["id"]))).one()
    assert t.aware(row.next_fire_at) == datetime(2026, 11, 23, 12, 10, tzinfo=UTC)
    # a fire time only a few seconds late is on time: it runs
    assert await scheduler.tick(env.svc, datetime(2026, 11, 23, 12, 10, 4, tzinfo=UTC)) == 1


async def test_catch_up_latest_runs_the_last_missed_fire_time_once(env: Env) -> None:
    schedule = await new_schedule(env, catch_up="latest")
    now = datetime(2026, 11, 23, 12, 5, tzinfo=UTC)
    await set_next(env, schedule["id"], datetime(2026, 11, 23, 11, 0, tzinfo=UTC))
    assert await scheduler.tick(env.svc, now) == 1
    assert await scheduler.tick(env.svc, now) == 0  # a second scheduler at the same moment adds nothing
    rows = await made_jobs(env, schedule["id"])
    assert fire_times(rows) == ["2026-11-23T12:00:00+00:00"]
    assert rows[0].source == "schedule" and rows[0].inputs == {"region": "eu", "pin": "********"}


async def test_catch_up_all_runs_every_missed_fire_time_when_overlap_allows(env: Env) -> None:
    schedule = await new_schedule(env, catch_up="all", overlap="allow")
    await set_next(env, schedule["id"], datetime(2026, 11, 23, 11, 0, tzinfo=UTC))
    assert await scheduler.tick(env.svc, datetime(2026, 11, 23, 12, 5, tzinfo=UTC)) == 7
    assert fire_times(await made_jobs(env, schedule["id"])) == [f"2026-11-23T{h}:00+00:00" for h in (
        "11:00", "11:10", "11:20", "11:30", "11:40", "11:50", "12:00"
    )]  # fmt: skip


async def test_overlap_skip_and_cancel_previous_while_the_last_job_is_still_queued(env: Env) -> None:
    skip = await new_schedule(env, catch_up="all")  # overlap skip is the default
    await set_next(env, skip["id"], datetime(2026, 11, 23, 11, 0, tzinfo=UTC))
    assert await scheduler.tick(env.svc, datetime(2026, 11, 23, 11, 25, tzinfo=UTC)) == 1  # 11:10, 11:20 skipped
    assert fire_times(await made_jobs(env, skip["id"])) == ["2026-11-23T11:00:00+00:00"]

    cancel = await new_schedule(env, overlap="cancel_previous")
    await set_next(env, cancel["id"], datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    assert await scheduler.tick(env.svc, datetime(2026, 11, 23, 12, 0, 1, tzinfo=UTC)) == 1
    assert await scheduler.tick(env.svc, datetime(2026, 11, 23, 12, 10, 1, tzinfo=UTC)) == 1
    first, second = await made_jobs(env, cancel["id"])
    assert (first.status, second.status) == ("cancelled", "queued")
    assert first.summary == f"Cancelled by schedule:{cancel['id']}."


async def test_a_job_fired_by_the_scheduler_that_lost_the_race_is_still_the_schedules_last_job(env: Env) -> None:
    """Two schedulers read the same due row. The first skips the fire time (the last job is still
    queued) and moves the schedule on; the last job ends; the second, late, fires it. The schedule
    must know that job, or its next fire time would start another one beside it."""
    schedule = await new_schedule(env)  # overlap: skip
    await set_next(env, schedule["id"], datetime(2026, 11, 23, 11, 0, tzinfo=UTC))
    assert await scheduler.tick(env.svc, datetime(2026, 11, 23, 11, 0, 1, tzinfo=UTC)) == 1
    [first] = await made_jobs(env, schedule["id"])
    now = datetime(2026, 11, 23, 11, 10, 1, tzinfo=UTC)
    [row] = await schedules.due(env.svc, now)  # what both schedulers read
    assert await scheduler.fire(env.svc, row, now) == 0  # the first: 11:00's job is still queued
    await jobs.act(env.svc, first.id, Action.CANCEL, "test", "finished")
    assert await scheduler.fire(env.svc, row, now) == 1  # the second
    _, second = await made_jobs(env, schedule["id"])
    assert second.status == "queued"
    assert await scheduler.tick(env.svc, datetime(2026, 11, 23, 11, 20, 1, tzinfo=UTC)) == 0  # 11:10's still queued
    assert fire_times(await made_jobs(env, schedule["id"])) == [
        "2026-11-23T11:00:00+00:00",
        "2026-11-23T11:10:00+00:00",
    ]


async def test_every_two_seconds_for_a_minute_with_two_schedulers_makes_exactly_one_job_per_fire_time(
    env: Env,
) -> None:
    env.write(RUNBOOK)
    with orch_process(env, "scheduler"), orch_process(env, "scheduler"):
        async with http_client(env.settings, role="operator") as http:
            body = {"runbook": "nightly", "cron": "* * * * * */2", "overlap": "allow", "inputs": {"region": "eu"}}
            schedule = (await http.post("/api/v1/schedules", json=body)).json()
            created = at(schedule["created_at"])
            # pause half-way between two fire times, a minute on, so no fire time is on the edge
            pause_at = created.replace(microsecond=0) + timedelta(seconds=61 - created.second % 2)
            await asyncio.sleep((pause_at - datetime.now(UTC)).total_seconds())
            await http.patch(schedule["url"], json={"active": False})
        await asyncio.sleep(2.5)  # anything the schedulers still do would show now
    expected = cron.between("* * * * * */2", "UTC", cron.next_after("* * * * * */2", "UTC", created), pause_at)
    rows = await made_jobs(env, schedule["id"])
    assert len(expected) == 30
    assert fire_times(rows) == [f.isoformat() for f in expected]
    assert {r.source for r in rows} == {"schedule"}


async def test_the_runbook_page_shows_the_schedule_and_pauses_and_resumes_it(env: Env) -> None:
    env.write(FILE_SCHEDULED)
    await auth.add_user(env.svc.engine, "ops", "operator", "ops-password")
    async with live_server(env.settings) as url, signed_in_page(url, "ops", "ops-password") as page:
        await page.goto(f"{url}/runbooks/morning")
        card = page.locator("#schedules")
        await expect(card).to_contain_text("0 6 * * 1-5")
        await expect(card).to_contain_text("Europe/Berlin")
        next_time = card.locator("dt:text('Next') + dd time")
        expected = cron.next_after("0 6 * * 1-5", "Europe/Berlin", datetime.now(UTC))
        assert at(await next_time.get_attribute("datetime")) == expected
        await card.get_by_role("button", name="Pause").click()
        await expect(card.get_by_role("button", name="Resume")).to_be_visible()
        await expect(card.locator(".schedule-active")).to_have_text("paused")
        assert (await schedules.listed(env.svc, "morning"))[0]["active"] is False
        await card.get_by_role("button", name="Resume").click()
        await expect(card.get_by_role("button", name="Pause")).to_be_visible()
        assert at((await schedules.listed(env.svc, "morning"))[0]["next_trigger"]) == expected


async def test_a_broken_schedule_is_logged_and_passed_over_and_the_others_still_fire(env: Env) -> None:
    broken = await new_schedule(env)
    healthy = await new_schedule(env)
    async with writing(env.svc.engine) as conn:  # as if ORCH_SECRET_KEY had changed since it was made
        await conn.execute(
            update(t.schedules).where(t.schedules.c.id == broken["id"]).values(secret_inputs="not-a-token")
        )
    for schedule in (broken, healthy):
        await set_next(env, schedule["id"], datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    assert await scheduler.tick(env.svc, datetime(2026, 11, 23, 12, 0, 5, tzinfo=UTC)) == 1
    assert len(await made_jobs(env, healthy["id"])) == 1 and await made_jobs(env, broken["id"]) == []
    async with reading(env.svc.engine) as conn:
        row = (await conn.execute(select(t.schedules).where(t.schedules.c.id == broken["id"]))).one()
    assert t.aware(row.next_fire_at) == datetime(2026, 11, 23, 12, 10, tzinfo=UTC)  # not stuck on it
