"""Notifications (issue 19): channels made by admins, messages queued from what jobs do, delivered to a
real SMTP server and real HTTP receivers, retried, de-duplicated, and shown on the job."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import async_playwright
from sqlalchemy import select, update

from orchestrator import auth, channels, jobs, scheduler, schedules
from orchestrator.config import Settings
from orchestrator.db import tables as t
from orchestrator.db.engine import reading, writing
from orchestrator.db.tables import utcnow
from orchestrator.notify.notifier import Notifier
from orchestrator.states import Action
from tests.integration.conftest import (
    Env,
    http_client,
    live_server,
    open_env,
    orch_process,
    prepare,
    running_worker,
    until,
)
from tests.receivers import http_receiver, smtp_server
from tests.support import CHROMIUM
from worker.browser import CHROMIUM_ARGS

SECRET = "a-webhook-signing-secret-of-some-length"

ASK = """
name: pay
inputs:
  invoice: {type: string, required: true}
  token: {type: string, secret: true}
notify:
  - {on: [approval_requested, failed, completed], channel: finance-mail}
steps:
  - {id: open, action: goto, url: "{{ site.url }}/form.html"}
  - {id: note, action: set, values: {invoice: "{{ inputs.invoice }}", token: "{{ inputs.token }}"}}
  - {id: ask, action: approval, message: "Pay invoice {{ inputs.invoice }}?"}
"""


@contextlib.asynccontextmanager
async def notified_env(tmp_path: Path, redis_url: str, site_url: str, **settings: Any) -> AsyncIterator[Env]:
    """An orchestrator whose settings carry these notification settings (smtp_url, notify_retry_s...)."""
    prepared = replace(await prepare(tmp_path, redis_url), **settings)
    async with open_env(prepared, site_url) as env:
        yield env


@contextlib.asynccontextmanager
async def notifier(env: Env) -> AsyncIterator[Notifier]:
    """The notifier loop as the scheduler runs it."""
    running = Notifier(env.svc)
    task = asyncio.create_task(running.run())
    try:
        yield running
    finally:
        running.stop()
        await task


async def add_channel(env: Env, name: str, kind: str, target: Any, secret: str | None = None) -> None:
    sealer = channels.Sealer(env.settings.secret_key)
    await channels.add(env.svc.engine, sealer, name, kind, target, secret, "tests")


async def deliveries(env: Env, job_id: str, count: int, *statuses: str) -> list[dict[str, Any]]:
    """The job's `notifications` once `count` of them are in one of `statuses`."""
    async with asyncio.timeout(60):
        while True:
            found = (await jobs.get(env.svc, job_id))["notifications"]
            if len([n for n in found if n["status"] in statuses]) >= count:
                return found
            await asyncio.sleep(0.1)


async def test_channels_are_for_admins_and_never_show_their_urls_or_secrets(env: Env) -> None:
    async with http_client(env.settings, role="admin") as admin:
        made = await admin.post(
            "/api/v1/channels", json={"name": "ops", "webhook": "https://hooks.example.com/T0/B0/XYZ", "secret": SECRET}
        )
        assert made.status_code == 201, made.text
        assert made.json()["target"] == "https://hooks.example.com/…"
        mail = await admin.post(
            "/api/v1/channels", json={"name": "finance", "email": ["ann@example.com", "bob@example.com"]}
        )
        assert mail.status_code == 201, mail.text
        listed = (await admin.get("/api/v1/channels")).json()["items"]
        assert [c["name"] for c in listed] == ["finance", "ops"]
        assert "XYZ" not in json.dumps(listed) and SECRET not in json.dumps(listed)
        assert listed[0]["target"] == "ann@example.com, bob@example.com"

        again = await admin.post("/api/v1/channels", json={"name": "ops", "slack": "https://hooks.slack.com/x"})
        assert again.status_code == 409 and "exists already" in again.json()["error"]
        for body, field in (
            ({"name": "bad name!", "slack": "https://hooks.slack.com/x"}, "name"),
            ({"name": "x", "email": ["not-an-address"]}, "email"),
            ({"name": "x", "webhook": "ftp://example.com/"}, "webhook"),
            ({"name": "x", "webhook": "https://user:pw@example.com/"}, "webhook"),
            ({"name": "x", "webhook": "https://example.com/", "secret": "short"}, "secret"),
            ({"name": "x", "slack": "https://hooks.slack.com/x", "email": "a@example.com"}, "email"),
            ({"name": "x", "slack": "https://hooks.slack.com/x", "extra": 1}, "extra"),
        ):
            bad = await admin.post("/api/v1/channels", json=body)
            assert bad.status_code == 422, (body, bad.text)
            assert any(named.startswith(field) for named in bad.json()["fields"]), (body, bad.json())
        assert (await admin.delete("/api/v1/channels/ops")).status_code == 204
        assert (await admin.delete("/api/v1/channels/ops")).status_code == 404
    for role in ("operator", "approver", "viewer"):
        async with http_client(env.settings, role=role) as other:
            assert (await other.get("/api/v1/channels")).status_code == 403
            refused = await other.post("/api/v1/channels", json={"name": "mine", "slack": "https://hooks.slack.com/x"})
            assert refused.status_code == 403
    async with reading(env.svc.engine) as conn:
        stored = (await conn.execute(select(t.channels.c.sealed))).scalars().all()
    assert stored and all("example.com" not in s for s in stored)  # sealed at rest


def test_channels_on_the_command_line(settings: Settings) -> None:
    environ = {**os.environ, **settings.environment()}

    def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "orchestrator.cli", "channels", *args]
        return subprocess.run(
            command, env=environ, input=stdin, capture_output=True, text=True, timeout=60, check=False
        )

    assert (
        cli(
            "add", "ops", "--webhook", "https://hooks.example.com/secret-path", "--secret-stdin", stdin=SECRET + "\n"
        ).returncode
        == 0
    )
    assert cli("add", "team", "--email", "ann@example.com,bob@example.com").returncode == 0
    listed = cli("list")
    assert listed.returncode == 0
    assert "ops\twebhook\thttps://hooks.example.com/…" in listed.stdout and "secret-path" not in listed.stdout
    assert "team\temail\tann@example.com, bob@example.com" in listed.stdout
    both = cli("add", "two", "--email", "a@example.com", "--slack", "https://hooks.slack.com/x")
    assert both.returncode == 1 and "exactly one of --email, --slack or --webhook" in both.stderr
    assert cli("add", "ops", "--slack", "https://hooks.slack.com/x").returncode == 1
    assert cli("remove", "ops").returncode == 0
    gone = cli("remove", "ops")
    assert gone.returncode == 1 and "No channel is named ops" in gone.stderr


async def test_an_approval_request_is_mailed_with_its_evidence_and_a_link(
    tmp_path: Path, redis_url: str, site_url: str
) -> None:
    with smtp_server() as inbox:
        async with notified_env(
            tmp_path, redis_url, site_url, smtp_url=inbox.url, mail_from="robots@example.com"
        ) as env:
            await add_channel(env, "finance-mail", "email", ["ann@example.com", "bob@example.com"])
            env.write(ASK)
            async with running_worker(env), notifier(env):
                job = await env.create("pay", {"invoice": "INV-9", "token": "s3cr3t-t0ken"})
                await until(env, job["id"], "waiting_for_approval")
                [mail] = await asyncio.to_thread(inbox.wait, 1)
                await opens_after_sign_in(env, mail, job["id"])
                await jobs.act(env.svc, job["id"], Action.APPROVE, "ann", "ok")
                await until(env, job["id"], "completed")
                await asyncio.to_thread(inbox.wait, 2)
                shown = await deliveries(env, job["id"], 2, "sent")
            approved = await jobs.get(env.svc, job["id"])
    assert mail["Subject"] == f"Approval needed: pay (job {job['id']})"
    assert mail["From"] == "robots@example.com"
    assert inbox.recipients[0] == ["ann@example.com", "bob@example.com"]
    text = mail.get_body(("plain",)).get_content()
    assert "Asks: Pay invoice INV-9?" in text
    assert f"{env.settings.public_url}/jobs/{job['id']}" in text
    assert '"invoice": "INV-9"' in text
    assert "s3cr3t-t0ken" not in mail.as_string()  # a secret input's value, captured by a step, is masked
    [evidence] = [p for p in mail.iter_attachments()]
    assert evidence.get_content_type() == "image/png"
    image = evidence.get_content()
    assert image.startswith(b"\x89PNG")
    assert hashlib.sha256(image).hexdigest() == approved["approval"]["screenshot_sha256"]
    assert inbox.messages[1]["Subject"] == f"Completed: pay (job {job['id']})"
    assert [(n["event"], n["channel"], n["status"], n["attempts"]) for n in shown] == [
        ("approval_requested", "finance-mail", "sent", 1),
        ("completed", "finance-mail", "sent", 1),
    ]


async def opens_after_sign_in(env: Env, mail: Any, job_id: str) -> None:
    """The mail's link, opened in a browser, asks for a sign-in and then shows the job waiting for approval."""
    [link] = re.findall(r"Open the job: (\S+)", mail.get_body(("plain",)).get_content())
    assert link == f"{env.settings.public_url}/jobs/{job_id}"
    await auth.add_user(env.svc.engine, "ann", "approver", "ann-password-1")
    async with live_server(env.settings) as url, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(url + urlsplit(link).path)  # the app at this test's address, as ORCH_PUBLIC_URL says
            assert "/login" in page.url
            await page.get_by_label("Username").fill("ann")
            await page.get_by_label("Password").fill("ann-password-1")
            await page.get_by_role("button", name="Sign in").click()
            await page.wait_for_url(f"{url}/jobs/{job_id}")
            await page.get_by_text("Pay invoice INV-9?").first.wait_for()
            assert await page.get_by_role("button", name="Approve").count() == 1
        finally:
            await browser.close()


FAILS = """
name: breaks
notify:
  - {on: [failed], channel: chat}
  - {on: [failed, completed], channel: hook}
steps:
  - {id: open, action: goto, url: "{{ site.url }}/form.html"}
  - {id: find, action: click, selector: "#no-such-button", timeout: 1}
"""


async def test_slack_and_a_signed_webhook_hear_of_a_failure(tmp_path: Path, redis_url: str, site_url: str) -> None:
    with http_receiver() as chat, http_receiver() as hook:
        async with notified_env(tmp_path, redis_url, site_url) as env:
            await add_channel(env, "chat", "slack", f"{chat.url}/services/T0/B0/abc")
            await add_channel(env, "hook", "webhook", f"{hook.url}/orchestrator", SECRET)
            async with notifier(env):
                job = await env.run(FAILS)
                assert job["status"] == "failed"
                [slack] = await asyncio.to_thread(chat.wait, 1)
                [post] = await asyncio.to_thread(hook.wait, 1)
    assert slack.path == "/services/T0/B0/abc"
    message = slack.json()["text"]
    assert f"Failed: breaks (job {job['id']})" in message and "failed at step find" in message
    assert f"{env.settings.public_url}/jobs/{job['id']}" in message
    expected = "sha256=" + hmac.new(SECRET.encode(), post.body, hashlib.sha256).hexdigest()
    assert post.headers["X-Orchestrator-Signature"] == expected
    assert post.headers["X-Orchestrator-Event"] == "failed"
    body = post.json()
    assert body["event"] == "failed" and body["job"]["id"] == job["id"] and body["job"]["status"] == "failed"
    assert body["url"] == f"{env.settings.public_url}/jobs/{job['id']}"
    assert "#no-such-button" in body["text"]


DONE = """
name: done
notify:
  - {on: [completed], channel: hook}
steps:
  - {id: one, action: set, values: {a: 1}}
"""


async def test_a_receiver_that_fails_three_times_gets_the_message_on_the_fourth_try(
    tmp_path: Path, redis_url: str, site_url: str
) -> None:
    with http_receiver() as hook:
        hook.failures = 3
        async with notified_env(tmp_path, redis_url, site_url, notify_retry_s=0.2) as env:
            await add_channel(env, "hook", "webhook", f"{hook.url}/in", SECRET)
            async with notifier(env):
                job = await env.run(DONE)
                await asyncio.to_thread(hook.wait, 1)
                [shown] = await deliveries(env, job["id"], 1, "sent")
    assert hook.answered == [500, 500, 500, 204]
    assert shown["attempts"] == 4 and shown["status"] == "sent"
    assert shown["last_error"] == "webhook channel hook: the receiver answered HTTP 500"
    assert len(hook.posts) == 1


async def test_without_a_mail_server_messages_go_to_the_log_and_the_job_page(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator.notify.send")
    await add_channel(env, "team", "email", "ann@example.com")
    async with notifier(env):
        job = await env.run(DONE.replace("channel: hook", "channel: team"))
        [shown] = await deliveries(env, job["id"], 1, "logged")
    assert shown["event"] == "completed" and shown["attempts"] == 1
    assert any(
        "notification mail not sent (ORCH_SMTP_URL is not set), to ann@example.com" in r.getMessage()
        and f"/jobs/{job['id']}" in r.getMessage()
        for r in caplog.records
    )
    async with http_client(env.settings, role="viewer") as http:
        page = (await http.get(f"/jobs/{job['id']}", headers={"Accept": "text/html"})).text
    assert 'data-role="notification"' in page and "logged" in page


async def test_a_missing_channel_is_shown_on_the_job_and_retried(tmp_path: Path, redis_url: str, site_url: str) -> None:
    async with notified_env(tmp_path, redis_url, site_url, notify_retry_s=60) as env, notifier(env):
        job = await env.run(DONE.replace("channel: hook", "channel: nowhere"))
        async with asyncio.timeout(30):
            while True:
                shown = (await jobs.get(env.svc, job["id"]))["notifications"]
                if shown and shown[0]["attempts"] and shown[0]["status"] == "pending":
                    break
                await asyncio.sleep(0.1)
    [shown] = shown
    assert shown["status"] == "pending"  # due again in a minute: the channel may be made meanwhile
    assert "No channel is named nowhere" in shown["last_error"]


SLOW = """
name: slow
settings:
  sla: {running: 1}
notify:
  - {on: [sla_missed], channel: hook}
steps:
  - {id: wait, action: sleep, seconds: 4}
"""


async def test_a_job_over_its_service_level_says_so_once(tmp_path: Path, redis_url: str, site_url: str) -> None:
    with http_receiver() as hook:
        async with notified_env(tmp_path, redis_url, site_url) as env:
            await add_channel(env, "hook", "webhook", f"{hook.url}/sla")
            running = Notifier(env.svc)
            env.write(SLOW)
            async with running_worker(env):
                job = await env.create("slow")
                await until(env, job["id"], "running")
                async with asyncio.timeout(30):
                    while not (await jobs.get(env.svc, job["id"]))["sla_missed"]:
                        await running.sweep()
                        await asyncio.sleep(0.3)
                await running.sweep()  # a second look makes no second miss
                await running.send_due()
                await until(env, job["id"], "completed")
            async with http_client(env.settings, role="metrics") as http:
                scraped = (await http.get("/metrics")).text
            done = await jobs.get(env.svc, job["id"])
    [missed] = done["sla_missed"]
    assert missed["limit"] == "running" and missed["seconds"] == 1
    [post] = hook.posts
    assert post.json()["event"] == "sla_missed" and post.json()["detail"] == {"limit": "running", "seconds": 1.0}
    assert 'orchestrator_sla_missed_total{limit="running",runbook="slow"} 1.0' in scraped
    assert 'orchestrator_notifications_total{event="sla_missed",status="sent"} 1.0' in scraped


async def test_a_worker_killed_after_the_request_still_gets_the_message_out_once(
    tmp_path: Path, redis_url: str, site_url: str
) -> None:
    """The worker asks and is killed at once; two schedulers (each with its notifier) send the mail once."""
    with smtp_server() as inbox:
        async with notified_env(tmp_path, redis_url, site_url, smtp_url=inbox.url) as env:
            await add_channel(env, "finance-mail", "email", "ann@example.com")
            env.write(ASK)
            with orch_process(env, "worker") as worker:
                job = await env.create("pay", {"invoice": "INV-1"})
                await until(env, job["id"], "waiting_for_approval")
                os.kill(worker.pid, signal.SIGKILL)
            with orch_process(env, "scheduler"), orch_process(env, "scheduler"):
                await asyncio.to_thread(inbox.wait, 1)
                await deliveries(env, job["id"], 1, "sent")
                await asyncio.sleep(3)  # time for a second message, if one were coming
    assert len(inbox.messages) == 1
    assert inbox.messages[0]["Subject"] == f"Approval needed: pay (job {job['id']})"


SCHEDULED = """
name: nightly
schedule: {cron: "0 0 1 1 *", catch_up: none}
notify:
  - {on: [schedule_missed], channel: hook}
steps:
  - {id: one, action: set, values: {a: 1}}
"""


async def test_fire_times_missed_while_no_scheduler_ran_are_reported_once(
    tmp_path: Path, redis_url: str, site_url: str
) -> None:
    with http_receiver() as hook:
        async with notified_env(tmp_path, redis_url, site_url) as env:
            await add_channel(env, "hook", "webhook", f"{hook.url}/missed")
            env.write(SCHEDULED)
            await env.svc.catalog.refresh(force=True)
            await schedules.sync(env.svc)
            due = datetime(utcnow().year - 3, 1, 1, tzinfo=UTC)  # no scheduler ran since this fire time
            async with writing(env.svc.engine) as conn:
                await conn.execute(update(t.schedules).values(next_fire_at=due))
            assert await scheduler.tick(env.svc) == 0  # catch_up: none runs none of them
            await scheduler.tick(env.svc)
            await Notifier(env.svc).send_due()
    [post] = hook.posts
    body = post.json()
    assert body["event"] == "schedule_missed" and body["missed"] == 4  # 1 January, three years ago to this year
    assert "nightly" in body["subject"] and body["url"] == f"{env.settings.public_url}/runbooks/nightly"


REMIND = """
name: remind
notify:
  - {on: [approval_requested, approval_reminder], channel: hook}
steps:
  - {id: ask, action: approval, message: "Sign the contract?", remind_every: 1, approvers: [user:ann]}
"""


async def test_an_undecided_approval_is_reminded_until_someone_decides(
    tmp_path: Path, redis_url: str, site_url: str
) -> None:
    with http_receiver() as hook:
        async with notified_env(tmp_path, redis_url, site_url) as env:
            await add_channel(env, "hook", "webhook", f"{hook.url}/remind")
            env.write(REMIND)
            running = Notifier(env.svc)
            async with running_worker(env):
                job = await env.create("remind")
                await until(env, job["id"], "waiting_for_approval")
                await asyncio.sleep(1.1)
                await running.step()  # the request, and the first reminder
                await running.sweep()  # seen again within the same second: no second first reminder
                await running.send_due()
                await asyncio.sleep(1.0)
                await running.sweep()
                await running.send_due()
                await jobs.act(env.svc, job["id"], Action.APPROVE, "ann", human="ann")
                await until(env, job["id"], "completed")
                await asyncio.sleep(1.1)
                await running.sweep()  # decided: no more reminders
                await running.send_due()
    sent = sorted((p.json()["event"], p.json()["detail"].get("reminder") or 0) for p in hook.posts)
    assert sent == [("approval_reminder", 1), ("approval_reminder", 2), ("approval_requested", 0)]
    [reminder] = [p.json() for p in hook.posts if p.json()["detail"].get("reminder") == 1]
    assert reminder["subject"] == f"Reminder: approval still needed: remind (job {job['id']})"
    assert "Who may decide: user:ann (1 approval(s) needed)" in reminder["text"]
