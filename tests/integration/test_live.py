"""Watching a job: live frames only while somebody watches (secrets hidden in them too), the step
timeline with screenshots and diagnostics, the session video, and approval evidence."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

from playwright.async_api import Page, expect

from orchestrator import auth, jobs
from orchestrator.keys import frame_key
from orchestrator.states import Action
from tests.integration.conftest import Env, live_server, running_worker, step, until
from tests.support import signed_in_page

WATCHED = """
name: watched
inputs:
  pin: {type: string, secret: true}
steps:
  - {id: open, action: goto, url: "{{ site.url }}/ticker.html"}
  - {id: pin, action: fill, selector: "#pin", value: "{{ inputs.pin }}"}
  - {id: name, action: fill, selector: "#name", value: "8888"}
  - {id: wait, action: sleep, seconds: %s}
"""

#: How many pixels of a 280x40 patch inside a field differ clearly from its box colour (#3b3b4f
#: when hidden, white when not): text shows up as such pixels.
INK = """async ([url, top, rgb]) => {
  const img = new Image();
  img.src = url;
  await img.decode();
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const g = canvas.getContext("2d");
  g.drawImage(img, 0, 0);
  const d = g.getImageData(110, top + 10, 280, 40).data;
  let ink = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (Math.abs(d[i] - rgb[0]) + Math.abs(d[i + 1] - rgb[1]) + Math.abs(d[i + 2] - rgb[2]) > 60) ink++;
  }
  return ink;
}"""


async def step_running(env: Env, job_id: str, step_id: str) -> None:
    async with asyncio.timeout(60):
        while step(await jobs.get(env.svc, job_id), step_id)["status"] != "running":
            await asyncio.sleep(0.1)


async def distinct_frames(page: Page, seconds: float) -> set[str]:
    seen: set[str] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        src = await page.locator("[data-role=live-screenshot-img]").get_attribute("src")
        if src and "/frame?" in src:
            seen.add(src)
        await asyncio.sleep(0.05)
    return seen


async def test_the_job_page_shows_live_frames_only_while_watched_with_secrets_hidden(env: Env) -> None:
    env.write(WATCHED % 20)
    await auth.add_user(env.svc.engine, "ops", "operator", "ops-password")
    async with running_worker(env), live_server(env.settings) as url:
        job = await env.create("watched", {"pin": "4444"})
        await step_running(env, job["id"], "wait")
        await asyncio.sleep(1)
        assert not await env.svc.redis.exists(frame_key(job["id"]))  # nobody watches: no frames
        async with signed_in_page(url, "ops", "ops-password") as page:
            await page.goto(f"{url}/jobs/{job['id']}")
            frames = await distinct_frames(page, 3)
            assert len(frames) >= 4, frames
            latest = sorted(frames, key=lambda u: int(u.rsplit("=", 1)[1]))[-1]
            hidden = await page.evaluate(INK, [latest, 100, [59, 59, 79]])
            shown = await page.evaluate(INK, [latest, 200, [255, 255, 255]])
            assert hidden == 0 and shown > 100, (hidden, shown)  # the PIN is covered, the name is not
        await jobs.act(env.svc, job["id"], Action.CANCEL, "tests")
        await until(env, job["id"], "cancelled")


FAILING = """
name: failing
steps:
  - {id: open, action: goto, url: "{{ site.url }}/ticker.html"}
  - {id: press, action: click, selector: ["#nope", ".missing"], timeout: 1}
"""


async def test_a_failed_step_shows_its_screenshot_and_diagnostics_when_clicked(env: Env) -> None:
    job = await env.run(FAILING)
    failed = step(job, "press")
    diagnostics = failed["diagnostics"]
    assert diagnostics["selectors"] == ["#nope", ".missing"]
    assert diagnostics["url"].endswith("/ticker.html") and diagnostics["title"] == "Ticker"
    assert any("ticker boom" in e for e in diagnostics["console_errors"])
    assert diagnostics["screenshot_url"] == failed["screenshot_url"]
    await auth.add_user(env.svc.engine, "ops", "operator", "ops-password")
    async with live_server(env.settings) as url, signed_in_page(url, "ops", "ops-password") as page:
        await page.goto(f"{url}/jobs/{job['id']}")
        item = page.locator("li[data-step-id=press]")
        detail = item.locator("[data-role=step-detail]")
        await expect(detail).to_be_hidden()
        await item.locator(".step-name").click()
        await expect(detail).to_be_visible()
        await expect(detail.locator("img.step-detail-shot").first).to_have_attribute("src", failed["screenshot_url"])
        await expect(detail).to_contain_text("Selectors tried")
        await expect(detail).to_contain_text(".missing")
        await expect(detail).to_contain_text("ticker boom")
        opened = page.locator("li[data-step-id=open]")
        await opened.locator(".step-name").click()
        shot = opened.locator("img.step-detail-shot")
        await expect(shot).to_have_attribute("src", step(job, "open")["screenshot_url"])
        assert await shot.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0


RECORDED = """
name: recorded
settings: {video: true}
steps:
  - {id: open, action: goto, url: "{{ site.url }}/ticker.html"}
  - {id: wait, action: sleep, seconds: 3}
  - {id: type, action: fill, selector: "#name", value: "after the wait"}
  - {id: wait-more, action: sleep, seconds: 2}
"""


async def wait_for_video(env: Env, job_id: str) -> dict[str, Any]:
    async with asyncio.timeout(60):
        while True:
            job = await jobs.get(env.svc, job_id)
            if any(a["kind"] == "video" for a in job["artifacts"]):
                return job
            await asyncio.sleep(0.2)


async def test_a_recorded_job_has_a_video_as_long_as_the_job_and_steps_seek_into_it(env: Env) -> None:
    job = await wait_for_video(env, (await env.run(RECORDED))["id"])
    assert job["status"] == "completed"
    [video] = [a for a in job["artifacts"] if a["kind"] == "video"]
    assert video["mime_type"] == "video/webm" and video["size"] > 1000
    offsets = [s["video_offset_s"] for s in job["steps"]]
    assert offsets == sorted(offsets) and offsets[0] < 1
    wait, typed = step(job, "wait"), step(job, "type")
    assert abs(typed["video_offset_s"] - wait["video_offset_s"] - wait["duration_s"]) < 0.3  # the 3 s wait
    await auth.add_user(env.svc.engine, "ops", "operator", "ops-password")
    async with live_server(env.settings) as url, signed_in_page(url, "ops", "ops-password") as page:
        await page.goto(f"{url}/jobs/{job['id']}")
        player = page.locator("video[data-role=video]")
        await expect(player).to_have_attribute("src", video["url"])
        duration = await player.evaluate(
            """v => new Promise((resolve, reject) => {
                 if (v.readyState >= 1) return resolve(v.duration);
                 v.addEventListener("loadedmetadata", () => resolve(v.duration));
                 v.addEventListener("error", () => reject(new Error("cannot play: " + (v.error && v.error.code))));
               })"""
        )
        assert abs(duration - job["duration_s"]) <= 0.2 * job["duration_s"], (duration, job["duration_s"])
        item = page.locator("li[data-step-id=type]")
        await item.locator(".step-name").click()
        await item.get_by_role("button", name="Play from").click()
        at = await player.evaluate("v => v.currentTime")
        assert abs(at - step(job, "type")["video_offset_s"]) < 0.5


APPROVAL = """
name: sign-off
steps:
  - {id: open, action: goto, url: "{{ site.url }}/ticker.html"}
  - {id: ask, action: approval, message: "Go on?"}
"""


async def test_an_approval_is_recorded_with_the_hash_of_the_screenshot_shown(env: Env) -> None:
    env.write(APPROVAL)
    async with running_worker(env):
        job = await env.create("sign-off")
        waiting = await until(env, job["id"], "waiting_for_approval")
        await jobs.act(env.svc, job["id"], Action.APPROVE, "alice", "looks right")
        done = await until(env, job["id"], "completed", "failed")
    shown = waiting["approval"]["screenshot_url"].rsplit("/", 1)[1]
    content = env.artifact_path(job["id"], shown).read_bytes()
    [decision] = [a for a in done["audit"] if a["action"] == "approve"]
    assert decision["evidence"] == hashlib.sha256(content).hexdigest()
    assert done["approval"]["screenshot_sha256"] == decision["evidence"]


CANCELLED = """
name: cut-short
settings: {video: true}
steps:
  - {id: open, action: goto, url: "{{ site.url }}/ticker.html"}
  - {id: note, action: set, values: {seen: true}}
  - {id: nap, action: sleep, seconds: 30, timeout: 60}
"""


async def test_metrics_count_live_and_a_cancelled_job_still_gets_its_video(env: Env) -> None:
    env.write(CANCELLED)
    await auth.add_user(env.svc.engine, "ops", "operator", "ops-password")
    async with running_worker(env), live_server(env.settings) as url:
        job = await env.create("cut-short")
        await step_running(env, job["id"], "nap")
        async with signed_in_page(url, "ops", "ops-password") as page:
            await page.goto(f"{url}/jobs/{job['id']}")
            await expect(page.locator("[data-metric=steps_succeeded]")).to_have_text("2")
            duration = page.locator("[data-metric=duration_s]")
            before = await duration.text_content()
            await expect(duration).not_to_have_text(before or "")  # it ticks while the job runs
            await page.get_by_role("button", name="Cancel").click()
            await expect(page.locator("[data-role=video-card]")).to_be_visible(timeout=30_000)
    done = await wait_for_video(env, job["id"])
    assert done["status"] == "cancelled"
    [video] = [a for a in done["artifacts"] if a["kind"] == "video"]
    assert video["mime_type"] == "video/webm" and video["size"] > 1000
