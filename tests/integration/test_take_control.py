"""Taking the wheel in the page (issue 20, point 3): on a job waiting on its page, an operator presses
Take control in the live view, clicks the code field in the frame, types the code, presses Enter, and
the job goes on by itself; a viewer gets no such button, and someone else holding control is named."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

from playwright.async_api import expect

from orchestrator import auth, control
from tests.integration.conftest import Env, live_server, running_worker, step, until
from tests.integration.test_handoff import LATER as HANDOFF
from tests.support import signed_in_page

LATER = HANDOFF.replace("AFTER", "-1")  # the page shows #dashboard only once 4711 is typed and entered


@contextlib.asynccontextmanager
async def a_job_waiting_for_a_person(env: Env) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """The web app's URL and a job paused on its handoff step, with a worker holding its page."""
    env.write(LATER)
    await auth.add_user(env.svc.engine, "ops", "operator", "ops-password")
    async with running_worker(env, concurrency=1), live_server(env.settings) as url:
        job = await env.create("later")
        await until(env, job["id"], "paused")
        yield url, job


#: A live frame is shown: the image carries the frame's time.
SHOWN = re.compile(".")


async def test_an_operator_takes_control_in_the_live_view_types_the_code_and_the_job_goes_on(env: Env) -> None:
    await auth.add_user(env.svc.engine, "vic", "viewer", "vic-password")
    async with a_job_waiting_for_a_person(env) as (url, job):
        async with signed_in_page(url, "vic", "vic-password") as page:
            await page.goto(f"{url}/jobs/{job['id']}")
            await expect(page.get_by_text("Enter the code sent to the phone")).to_be_visible()
            await expect(page.locator("[data-role=live-screenshot-img]")).to_have_attribute("data-frame-at", SHOWN)
            await expect(page.get_by_role("button", name="Take control")).to_have_count(0)

        async with signed_in_page(url, "ops", "ops-password") as page:
            await page.goto(f"{url}/jobs/{job['id']}")
            frame = page.locator("[data-role=live-screenshot-img]")
            await expect(frame).to_have_attribute("data-frame-at", SHOWN)
            # a frame is the viewport (1280x800 CSS pixels) at device scale 1: its own size is the page's
            assert await frame.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [1280, 800]
            take = page.get_by_role("button", name="Take control")

            await control.take(env.svc.engine, env.svc.redis, job["id"], "olga")  # somebody else has it
            await take.click()
            await expect(page.get_by_role("alert")).to_contain_text("olga holds control")
            await expect(page.get_by_text("You are in control")).to_have_count(0)
            await control.give_back(env.svc.engine, env.svc.redis, job["id"], "olga", "given back")

            await take.click()
            await expect(page.get_by_text("You are in control")).to_be_visible()
            await expect(page.get_by_role("button", name="Give back")).to_be_visible()
            await expect(take).to_be_hidden()
            await expect(frame).to_be_focused()
            box = await frame.bounding_box()
            assert box is not None
            await page.mouse.click(box["x"] + box["width"] * 150 / 1280, box["y"] + box["height"] * 115 / 800)
            await expect(page.locator(".control-marker")).to_have_count(1)  # where the click went
            await page.keyboard.type("4711")
            await page.keyboard.press("Enter")
            done = await until(env, job["id"], "completed", "failed")
            assert done["status"] == "completed", done["error"]
            await expect(page.get_by_text("You are in control")).to_be_hidden()  # the job went on: control ended
            await expect(take).to_be_hidden()
            assert page.url == f"{url}/jobs/{job['id']}"  # the frame's link did not open

    assert step(done, "read")["captured"] == {"seen": "Dashboard"}
    audit = [(e["actor"], e["action"]) for e in done["audit"]]
    assert audit == [("olga", "take_control"), ("olga", "give_back"), ("ops", "take_control"), ("ops", "give_back")]
    assert "3 input(s)" in done["audit"][3]["comment"]  # the click, "4711" typed as one, Enter


async def test_give_back_ends_control_and_the_job_still_waits(env: Env) -> None:
    async with a_job_waiting_for_a_person(env) as (url, job), signed_in_page(url, "ops", "ops-password") as page:
        await page.goto(f"{url}/jobs/{job['id']}")
        await page.get_by_role("button", name="Take control").click()
        bar = page.locator("[data-role=control-bar]")
        await expect(page.get_by_role("button", name="Resume")).to_be_visible()  # a paused job
        await bar.get_by_role("button", name="Give back").click()
        await expect(page.get_by_text("You are in control")).to_be_hidden()
        await expect(page.get_by_role("button", name="Take control")).to_be_visible()
        assert await control.holder(env.svc.redis, job["id"]) is None
        await page.get_by_role("button", name="Take control").click()
        await page.get_by_role("button", name="Resume").click()
        done = await until(env, job["id"], "completed", "failed")
        await expect(page.get_by_role("button", name="Take control")).to_be_hidden()
    assert done["handoff"]["outcome"] == "resumed"
