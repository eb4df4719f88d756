"""Notifications delivered on SQLite and on PostgreSQL (issue 19, review): a job's event becomes one
outbox row and one delivery however many notifiers send at once; an event committed late is never
skipped by the notifier's cursor; a sender whose lease ran out cannot undo the delivery of the sender
that took over; hostile receivers (a body that never ends, a status line that never ends, an SMTP server
that trickles or refuses) cost a bounded time and leave no URL or password in the error; a service level
missed is recorded together with its message; what a message says stays small and cannot ping a Slack
channel; and a damaged approval record does not stop the reminders of other jobs."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text, update

from orchestrator import channels, events, history, jobs
from orchestrator.db import tables as t
from orchestrator.db.engine import reading, writing
from orchestrator.db.tables import utcnow
from orchestrator.notify import outbox
from orchestrator.notify.notifier import Notifier
from orchestrator.states import Action, JobStatus
from orchestrator.transitions import move
from orchestrator.views import iso
from tests.integration.conftest import Env, to_waiting
from tests.integration.test_notifications import DONE, SECRET, add_channel
from tests.receivers import http_receiver, refusing_smtp_server, trickler

SECRET_PATH = "/services/T000/B000/very-secret-path"


async def shown(env: Env, job_id: str) -> list[dict[str, Any]]:
    return list((await jobs.get(env.svc, job_id))["notifications"])


async def settled(env: Env, job_id: str, *statuses: str, seconds: float = 60) -> list[dict[str, Any]]:
    """The job's notifications once there is one and every one is in one of `statuses`."""
    async with asyncio.timeout(seconds):
        while True:
            found = await shown(env, job_id)
            if found and all(n["status"] in statuses for n in found):
                return found
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def notifiers(env: Env, count: int) -> AsyncIterator[list[Notifier]]:
    """`count` notifier loops at once, as `count` scheduler processes run them."""
    running = [Notifier(env.svc) for _ in range(count)]
    tasks = [asyncio.create_task(n.run()) for n in running]
    try:
        yield running
    finally:
        for n in running:
            n.stop()
        await asyncio.gather(*tasks)


async def test_an_event_is_queued_once_and_delivered_once_by_two_notifiers_after_retries(any_db_env: Env) -> None:
    env = any_db_env
    env.settings = env.svc.settings = replace(env.settings, notify_retry_s=0.2)
    with http_receiver() as hook:
        hook.failures = 2
        await add_channel(env, "hook", "webhook", f"{hook.url}/in", SECRET)
        async with notifiers(env, 2):
            job = await env.run(DONE)
            assert job["status"] == "completed"
            [delivered] = await settled(env, job["id"], "sent")
            await asyncio.sleep(1.5)  # time for a second delivery, if one were coming
        assert hook.answered == [500, 500, 204]
        [post] = hook.posts
    assert (delivered["event"], delivered["channel"], delivered["attempts"]) == ("completed", "hook", 3)
    assert delivered["last_error"] == "webhook channel hook: the receiver answered HTTP 500"
    assert (
        post.headers["X-Orchestrator-Signature"]
        == "sha256=" + hmac.new(SECRET.encode(), post.body, hashlib.sha256).hexdigest()
    )
    assert post.json()["job"]["id"] == job["id"] and post.json()["event"] == "completed"
    again = [outbox.Message(job["id"], "done", "completed", "hook"), outbox.Message(job["id"], "done", "failed", "x")]
    async with writing(env.svc.engine) as conn:  # queued again (a second scheduler's scan): nothing new
        assert await outbox.queue(conn, again) == 1  # the completed message is there already; the other is new
    async with writing(env.svc.engine) as conn:
        assert await outbox.queue(conn, again) == 0


async def test_an_event_committed_late_is_not_skipped_by_the_cursor(any_db_env: Env) -> None:
    """Two transactions move two jobs; the one that appended its event first commits last. The notifier
    reads in between: its cursor must not pass the first event before that is committed."""
    env = any_db_env
    env.write(DONE)
    first, second = (await env.create("done"))["id"], (await env.create("done"))["id"]
    notifier = Notifier(env.svc)
    await notifier.scan()  # the creation events: nothing to tell

    async def complete(conn: Any, job_id: str) -> None:
        moved: list[events.Pending] = []
        await move(conn, job_id, JobStatus.RUNNING, events=moved)
        await move(conn, job_id, JobStatus.COMPLETED, events=moved)
        await events.append(conn, moved)

    async def later() -> None:
        async with writing(env.svc.engine) as conn:
            await complete(conn, second)

    async with writing(env.svc.engine) as conn:
        await complete(conn, first)  # its events have ids now, and are not committed
        racing = asyncio.create_task(later())
        await asyncio.sleep(0.5)
        assert not racing.done()  # the second waits for the first to commit
        await notifier.scan()
    await racing
    while await notifier.scan():
        pass
    async with reading(env.svc.engine) as conn:
        queued = (await conn.execute(select(t.notifications.c.job_id, t.notifications.c.event))).all()
    assert sorted(queued) == sorted([(first, "completed"), (second, "completed")])


async def queued(env: Env, url: str) -> str:
    """A job of DONE (not run) whose `completed` message to the webhook channel `hook` at `url` is queued."""
    env.write(DONE)
    job_id = str((await env.create("done"))["id"])
    await add_channel(env, "hook", "webhook", f"{url}/in")
    async with writing(env.svc.engine) as conn:
        await outbox.queue(conn, [outbox.Message(job_id, "done", "completed", "hook")])
    return job_id


async def test_a_sender_whose_lease_ran_out_cannot_undo_the_delivery_of_the_one_that_took_over(
    any_db_env: Env,
) -> None:
    env = any_db_env
    with http_receiver() as hook:
        job_id = await queued(env, hook.url)
        [stale] = await outbox.claim(env.svc.engine)  # a sender that hangs past its lease
        async with writing(env.svc.engine) as conn:
            await conn.execute(update(t.notifications).values(lease_until=utcnow() - timedelta(seconds=1)))
        [taken] = await outbox.claim(env.svc.engine)  # another sender takes the message over
        assert taken["attempts"] == stale["attempts"] + 1
        await outbox.failed(env.svc.engine, stale, "late", 0.01)  # the stale one reports its failure late
        await outbox.done(env.svc.engine, taken, outbox.SENT)  # the other one got it out
        await asyncio.sleep(0.05)
        await Notifier(env.svc).send_due()
        assert hook.posts == []  # nobody sends it a third time
    [row] = await shown(env, job_id)
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 2, None)

    async with writing(env.svc.engine) as conn:  # and a crashed sender's message goes out once more
        await outbox.queue(conn, [outbox.Message(job_id, "done", "failed", "hook")])
    with http_receiver() as hook:
        await add_channel_again(env, hook.url)
        await outbox.claim(env.svc.engine)  # the sender dies here
        async with writing(env.svc.engine) as conn:
            await conn.execute(
                update(t.notifications)
                .where(t.notifications.c.status == outbox.SENDING)
                .values(lease_until=utcnow() - timedelta(seconds=1))
            )
        await Notifier(env.svc).send_due()
        await Notifier(env.svc).send_due()
        assert len(hook.posts) == 1
    assert [(n["event"], n["status"], n["attempts"]) for n in await shown(env, job_id)] == [
        ("completed", "sent", 2),
        ("failed", "sent", 2),
    ]


async def add_channel_again(env: Env, url: str) -> None:
    await channels.remove(env.svc.engine, "hook")
    await add_channel(env, "hook", "webhook", f"{url}/in")


async def test_a_message_given_up_after_24_hours_is_failed_for_good(any_db_env: Env) -> None:
    env = any_db_env
    with http_receiver() as hook:
        hook.failures = 10
        job_id = await queued(env, hook.url)
        async with writing(env.svc.engine) as conn:
            await conn.execute(update(t.notifications).values(created_at=utcnow() - timedelta(hours=24)))
        await Notifier(env.svc).send_due()
    [row] = await shown(env, job_id)
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert row["last_error"] == "webhook channel hook: the receiver answered HTTP 500"


HTTP_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000000000\r\n\r\n"


def log_as_processes_do(caplog: pytest.LogCaptureFixture) -> None:
    """The levels orchestrator/logs.py `configure` sets in every process (httpx's request lines off)."""
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.WARNING, logger="httpx")


async def test_hostile_receivers_cost_a_bounded_time_and_leave_no_secret_in_the_error(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    log_as_processes_do(caplog)
    env.write(DONE)
    job_id = (await env.create("done"))["id"]
    with trickler(HTTP_HEAD, b"x") as endless, trickler(b"", b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000) as mute:
        await add_channel(env, "endless", "webhook", f"http://{endless}{SECRET_PATH}")  # answers 200, body never ends
        await add_channel(env, "mute", "slack", f"http://{mute}{SECRET_PATH}")  # never ends its status line
        async with writing(env.svc.engine) as conn:
            await outbox.queue(
                conn,
                [
                    outbox.Message(job_id, "done", "completed", "endless"),
                    outbox.Message(job_id, "done", "completed", "mute"),
                ],
            )
        notifier = Notifier(env.svc, deadline_s=2)
        async with asyncio.timeout(20):
            await notifier.send_due()
    found = {n["channel"]: n for n in await shown(env, job_id)}
    assert found["endless"]["status"] == "sent"  # the 200 is what counts; the body is not read
    assert found["mute"]["status"] == "pending"
    assert found["mute"]["last_error"] == "slack channel mute: no answer within 2 s"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "very-secret-path" not in json.dumps(found) and "very-secret-path" not in logged


async def test_an_smtp_server_that_refuses_or_trickles_is_shown_without_the_password(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    log_as_processes_do(caplog)
    env.write(DONE.replace("channel: hook", "channel: mail"))
    job_id = (await env.create("done"))["id"]
    await add_channel(env, "mail", "email", ["ann@example.com"])
    async with writing(env.svc.engine) as conn:
        await outbox.queue(conn, [outbox.Message(job_id, "done", "completed", "mail")])
    with refusing_smtp_server() as url:
        env.svc.settings = replace(env.settings, smtp_url=url)
        await Notifier(env.svc).send_due()
    [refused] = await shown(env, job_id)
    assert refused["status"] == "pending"
    assert refused["last_error"] == (
        "mail channel mail: SMTPRecipientsRefused (550 5.1.1 <ann@example.com>: Recipient address rejected: "
        "User unknown)"
    )

    async with writing(env.svc.engine) as conn:  # due again now
        await conn.execute(update(t.notifications).values(next_at=utcnow()))
    with trickler(b"", b"220 mail.example.com ESMTP " + b"a" * 1000) as slow:
        env.svc.settings = replace(env.settings, smtp_url=f"smtp://mailer:hunter2-password@{slow}")
        async with asyncio.timeout(20):
            await Notifier(env.svc, deadline_s=2).send_due()
    [trickled] = await shown(env, job_id)
    assert (trickled["status"], trickled["attempts"]) == ("pending", 2)
    assert trickled["last_error"] == "mail channel mail: no answer within 2 s"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "hunter2" not in logged and "hunter2" not in json.dumps(await jobs.get(env.svc, job_id))


ASK = """
name: ask
notify:
  - {on: [approval_requested], channel: chat}
  - {on: [approval_requested], channel: hook}
steps:
  - {id: ask, action: approval, message: "Pay?"}
"""


async def test_a_message_stays_small_and_cannot_ping_a_slack_channel(env: Env) -> None:
    """A page's text captured by a run is hostile: it may hold Slack's mention syntax and be huge."""
    env.write(ASK)
    job_id = (await env.create("ask"))["id"]
    await to_waiting(env, job_id)
    captured = {"vendor": "<!channel> <https://evil.example|Click to approve> & co", "rows": ["x" * 1000] * 2000}
    asked = {"step_id": "ask", "message": "Pay " + "y" * 100_000, "requested_at": iso(utcnow()), "captured": captured}
    async with writing(env.svc.engine) as conn:
        await conn.execute(update(t.jobs).where(t.jobs.c.id == job_id).values(approval=asked))
    with http_receiver() as chat, http_receiver() as hook:
        await add_channel(env, "chat", "slack", f"{chat.url}/slack")
        await add_channel(env, "hook", "webhook", f"{hook.url}/hook")
        notifier = Notifier(env.svc)
        await notifier.scan()
        await notifier.send_due()
        [slack], [post] = chat.posts, hook.posts
    said = slack.json()["text"]
    assert "&lt;!channel&gt; &lt;https://evil.example|Click to approve&gt; &amp; co" in said
    assert "<!channel>" not in said and "<https://evil" not in said
    assert len(slack.body) < 20_000 and len(post.body) < 20_000
    body = post.json()
    assert body["approval"]["captured"] is None and body["approval"]["captured_truncated"] is True
    assert body["approval"]["message"].endswith("…") and len(body["approval"]["message"]) < 5_000
    async with reading(env.svc.engine) as conn:
        stored = (await conn.execute(select(t.notifications.c.detail))).scalars().all()
    assert all(len(json.dumps(d)) < 20_000 for d in stored)  # the outbox keeps no copy of huge values


SLA = """
name: slow
settings: {sla: {running: 1}}
notify:
  - {on: [sla_missed], channel: hook}
steps:
  - {id: one, action: sleep, seconds: 60}
"""


async def test_a_missed_service_level_is_recorded_together_with_its_message(any_db_env: Env) -> None:
    """The outbox refuses a write once (a full disk, say): the miss is not recorded without its message,
    so the next sweep records both."""
    env = any_db_env
    env.write(SLA)
    job_id = (await env.create("slow"))["id"]
    async with writing(env.svc.engine) as conn:
        moved: list[events.Pending] = []
        await move(
            conn, job_id, JobStatus.RUNNING, values={"started_at": utcnow() - timedelta(seconds=5)}, events=moved
        )
        await events.append(conn, moved)
    postgres = env.svc.engine.dialect.name == "postgresql"
    async with writing(env.svc.engine) as conn:
        for statement in FULL_DISK["postgresql" if postgres else "sqlite"]:
            await conn.execute(text(statement))
    notifier = Notifier(env.svc)
    with contextlib.suppress(Exception):
        await notifier.sweep()
    async with writing(env.svc.engine) as conn:
        await conn.execute(text("DROP TRIGGER full_disk ON notifications" if postgres else "DROP TRIGGER full_disk"))
    await notifier.sweep()
    async with reading(env.svc.engine) as conn:
        queued = (await conn.execute(select(t.notifications.c.event, t.notifications.c.detail))).all()
    assert [(e, d) for e, d in queued] == [("sla_missed", {"limit": "running", "seconds": 1.0})]
    assert [m["limit"] for m in (await jobs.get(env.svc, job_id))["sla_missed"]] == ["running"]


FULL_DISK = {
    "sqlite": ["CREATE TRIGGER full_disk BEFORE INSERT ON notifications BEGIN SELECT RAISE(ABORT, 'disk full'); END"],
    "postgresql": [
        "CREATE FUNCTION full_disk() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER full_disk BEFORE INSERT ON notifications FOR EACH ROW EXECUTE FUNCTION full_disk()",
    ],
}

REMIND = """
name: remind
notify:
  - {on: [approval_reminder], channel: hook}
steps:
  - {id: ask, action: approval, message: "Sign?", remind_every: 1}
"""


async def test_a_damaged_approval_record_does_not_stop_the_reminders_of_other_jobs(env: Env) -> None:
    env.write(REMIND)
    damaged = (await env.create("remind"))["id"]
    good = (await env.create("remind"))["id"]
    while good < damaged:  # the sweep goes in id order: the damaged one comes first
        good = (await env.create("remind"))["id"]
    asked = iso(utcnow() - timedelta(seconds=3))
    for job_id, approval in (
        (damaged, {"step_id": "ask", "message": "?", "requested_at": asked, "remind_every": "often"}),
        (good, {"step_id": "ask", "message": "Sign?", "requested_at": asked, "remind_every": 1}),
    ):
        await to_waiting(env, job_id)
        async with writing(env.svc.engine) as conn:
            await conn.execute(update(t.jobs).where(t.jobs.c.id == job_id).values(approval=approval))
    await Notifier(env.svc).sweep()
    async with reading(env.svc.engine) as conn:
        queued = (await conn.execute(select(t.notifications.c.job_id, t.notifications.c.event))).all()
    assert queued == [(good, "approval_reminder")]


ASKED = """
name: asked
notify:
  - {on: [approval_requested], channel: hook}
steps:
  - {id: ask, action: approval, message: "Sign?"}
"""


async def test_a_notifier_that_was_behind_asks_only_for_a_decision_still_open(env: Env) -> None:
    """Read late, a request decided meanwhile is news to nobody, and two status events of one request
    (a job asking again after a lost worker's attempt, the same request) make one message."""
    env.write(ASKED)
    decided, open_ = (await env.create("asked"))["id"], (await env.create("asked"))["id"]
    for job_id in (decided, open_):
        await to_waiting(env, job_id)
        async with writing(env.svc.engine) as conn:
            asked = {"step_id": "ask", "message": "Sign?", "requested_at": iso(utcnow()), "votes": []}
            await conn.execute(update(t.jobs).where(t.jobs.c.id == job_id).values(approval=asked))
    await jobs.act(env.svc, decided, Action.APPROVE, "ann")
    async with writing(env.svc.engine) as conn:  # the same request announced again
        moved: list[events.Pending] = []
        await move(conn, open_, JobStatus.RUNNING, events=moved)
        await move(conn, open_, JobStatus.WAITING_FOR_APPROVAL, events=moved)
        await events.append(conn, moved)
    notifier = Notifier(env.svc)
    while await notifier.scan():
        pass
    async with reading(env.svc.engine) as conn:
        queued = (await conn.execute(select(t.notifications.c.job_id, t.notifications.c.event))).all()
    assert queued == [(open_, "approval_requested")]


async def test_a_message_about_a_job_deleted_meanwhile_is_not_sent(env: Env) -> None:
    with http_receiver() as hook:
        job_id = await queued(env, hook.url)
        await jobs.act(env.svc, job_id, Action.CANCEL, "admin")
        await history.remove(env.svc, "done", job_id, "admin")  # DELETE /api/v1/runbooks/done/history/{id}
        await Notifier(env.svc).send_due()
        assert hook.posts == []
    async with reading(env.svc.engine) as conn:  # deleting a job deletes its messages (and its SLA misses)
        assert (await conn.execute(select(t.notifications))).all() == []
