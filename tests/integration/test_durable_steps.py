"""A browser step that changed the target is durable before the next browser step begins, so a
worker killed right then does not make the next attempt do it again (issue 16, point 16)."""

from __future__ import annotations

import os
import secrets
import signal
import sqlite3
import threading
from pathlib import Path

from tests.integration.conftest import Env, orch_process, until
from tests.support import ON_REQUEST, SEEN

SUBMIT = """
name: submit-once
inputs:
  key: {type: string, required: true}
steps:
  - {id: open, action: goto, url: "{{ site.url }}/submit.html?key={{ inputs.key }}", screenshot: never}
  - {id: submit, action: click, selector: "#send", screenshot: never}
  - {id: confirm, action: wait_for, selector: "#done", state: visible, screenshot: never}
  - {id: next, action: goto, url: "{{ site.url }}/slow?seconds=1&after={{ inputs.key }}", screenshot: never}
"""


def hold_writes(database: Path, seconds: float) -> None:
    """Keep the database's write lock for a while, as a busy database would: the worker's commits wait."""
    conn = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    threading.Timer(seconds, lambda: (conn.execute("COMMIT"), conn.close())).start()


async def test_a_worker_killed_as_the_next_browser_step_begins_does_not_submit_twice(env: Env) -> None:
    key = secrets.token_hex(4)
    job = await env.create(env.write(SUBMIT), {"key": key})
    with orch_process(env, "worker") as first:

        def on_request(path: str) -> None:
            if path.endswith(f"submitted={key}"):  # the click reached the target: its record now commits slowly
                hold_writes(env.settings.data_dir / "orchestrator.db", 1.5)
            if path.endswith(f"after={key}") and first.poll() is None:
                os.killpg(first.pid, signal.SIGKILL)  # the moment the next browser step reaches the target

        ON_REQUEST.append(on_request)
        try:
            await until(env, job["id"], "running")
            first.wait(60)
        finally:
            ON_REQUEST.remove(on_request)
    with orch_process(env, "worker"):
        done = await until(env, job["id"], "completed", "failed", seconds=90)
    assert done["status"] == "completed", done["error"]
    assert done["attempt"] == 2
    assert SEEN.count(f"/data.html?submitted={key}") == 1, [(s["id"], s["attempt"], s["status"]) for s in done["steps"]]
    assert [(s["id"], s["attempt"]) for s in done["steps"]] == [("open", 1), ("submit", 1), ("confirm", 1), ("next", 2)]
