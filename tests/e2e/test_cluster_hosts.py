"""A worker on another host (issue 18): the web and the scheduler on one network host, a worker on a
second one (a network namespace made here with iproute2, as root), Redis, PostgreSQL and an S3 store
reached over the virtual network only. The two hosts share no disk (each its own ORCH_DATA_DIR, the
worker not even the runbooks folder) and no loopback. A browser job with screenshots, a download
and an approval runs on the far worker; the web serves every artifact and the live frames."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx

from orchestrator.dev import scratch_postgres
from tests.e2e.cluster import job_in
from tests.s3server import CREDENTIALS, bucket_keys, make_bucket, moto_server
from tests.support import CHROMIUM, SITE_DIR, env_without_orch, free_port, redis_server, sse, target_site

ORCHESTRATOR = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "orchestrator")

RUNBOOK = """
name: far
settings: {step_timeout: 30}
steps:
  - {id: open, action: goto, url: "SITE/data.html"}
  - {id: look, action: sleep, seconds: 3}
  - {id: report, action: download, selector: "#report", save_as: report}
  - {id: ok, action: approval, message: "Send the report?"}
  - {id: shot, action: screenshot, name: after-approval}
  - {id: rows, action: export, format: json, data: {sent: true}, filename: sent.json}
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def second_host() -> Iterator[tuple[str, str, str]]:
    """A network namespace joined to this one by a veth pair on a /24 of its own; yields
    (namespace, this host's address, the other host's address)."""
    tag = secrets.token_hex(3)
    name, near, far = f"orch-{tag}", f"va{tag}", f"vb{tag}"
    subnet = f"10.{200 + int(tag[:2], 16) % 50}.{int(tag[2:4], 16)}"
    ip("netns", "add", name)
    try:
        ip("link", "add", near, "type", "veth", "peer", "name", far)
        ip("link", "set", far, "netns", name)
        ip("addr", "add", f"{subnet}.1/24", "dev", near)
        ip("link", "set", near, "up")
        ip("netns", "exec", name, "ip", "addr", "add", f"{subnet}.2/24", "dev", far)
        ip("netns", "exec", name, "ip", "link", "set", far, "up")
        ip("netns", "exec", name, "ip", "link", "set", "lo", "up")  # the worker's own loopback (its proxy)
        yield name, f"{subnet}.1", f"{subnet}.2"
    finally:
        subprocess.run(["ip", "link", "del", near], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


@contextlib.contextmanager
def forward(listen: str, target: tuple[str, int]) -> Iterator[int]:
    """A TCP relay on `listen`:free port to `target` (the local PostgreSQL listens on 127.0.0.1 only:
    this is how the other host reaches it over the virtual network); yields the port."""
    loop = asyncio.new_event_loop()
    started, port = threading.Event(), free_port()
    stop: asyncio.Future[None] = loop.create_future()
    links: set[asyncio.StreamWriter] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        links.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        links.add(up_writer)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def serve() -> None:
        server = await asyncio.start_server(relay, listen, port)
        started.set()
        await stop
        server.close()
        for writer in links:
            writer.close()
        await server.wait_closed()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield port
    finally:
        loop.call_soon_threadsafe(stop.set_result, None)
        thread.join(10)
        loop.close()


@contextlib.contextmanager
def process(command: list[str], env: dict[str, str], log: Path, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        child = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield child
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()


async def live_frames(url: str, token: str, job_id: str, want: int) -> list[bytes]:
    """Follow the job's stream as a watcher does; fetch the JPEG of each live `screenshot` event."""
    frames: list[bytes] = []
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client,
        asyncio.timeout(60),
        client.stream("GET", f"/api/v1/jobs/{job_id}/events") as stream,
    ):
        async for event in sse(stream, live=True):
            if event.type != "screenshot" or not event.data.get("live"):
                continue
            answer = await client.get(event.data["url"])
            if answer.status_code == 200:
                assert answer.headers["content-type"] == "image/jpeg"
                frames.append(answer.content)
            if len(frames) >= want:
                return frames
    return frames


async def test_a_worker_on_another_host_runs_a_browser_job_the_web_serves_whole(tmp_path: Path) -> None:
    assert os.geteuid() == 0, "this test makes a network namespace (a second host): run it as root, as CI does"
    with contextlib.ExitStack() as stack:
        namespace, near, _far = stack.enter_context(second_host())
        endpoint = stack.enter_context(moto_server(near))
        redis_url = stack.enter_context(redis_server(tmp_path / "redis", near))
        site = stack.enter_context(target_site(near))
        pg_port = stack.enter_context(forward(near, ("127.0.0.1", 5432)))
        make_bucket(endpoint, "artifacts")
        async with scratch_postgres() as local_url:
            # every host reaches the database through the relay on the virtual network
            db_url = local_url.replace("127.0.0.1:5432", f"{near}:{pg_port}")
            web_host, worker_host = tmp_path / "host-a", tmp_path / "host-b"
            (web_host / "runbooks").mkdir(parents=True)
            (worker_host / "runbooks").mkdir(parents=True)  # empty: the worker reads runbooks from the database
            (web_host / "runbooks" / "far.yaml").write_text(RUNBOOK.replace("SITE", site))
            port = free_port()
            common = {
                **env_without_orch(),
                **CREDENTIALS,
                "ORCH_DATABASE_URL": db_url,
                "ORCH_REDIS_URL": redis_url,
                "ORCH_ARTIFACTS_URL": "s3://artifacts/cluster",
                "ORCH_S3_ENDPOINT": endpoint,
                "ORCH_SECRET_KEY": secrets.token_urlsafe(32),
                "ORCH_BROWSER_PATH": CHROMIUM or "",
                "ORCH_PUBLIC_URL": f"http://{near}:{port}",
            }
            web_env = {
                **common,
                "ORCH_DATA_DIR": str(web_host / "var"),
                "ORCH_RUNBOOKS_DIR": str(web_host / "runbooks"),
                "ORCH_HOST": near,
                "ORCH_PORT": str(port),
            }
            worker_env = {
                **common,
                "ORCH_DATA_DIR": str(worker_host / "var"),
                "ORCH_RUNBOOKS_DIR": str(worker_host / "runbooks"),
                "ORCH_WORKER_CONCURRENCY": "2",
            }
            made = subprocess.run(
                [ORCHESTRATOR, "tokens", "create", "far-admin", "--role", "admin"],
                env=web_env,
                cwd=web_host,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            token = made.stdout.strip().splitlines()[-1]
            far_worker = ["ip", "netns", "exec", namespace, ORCHESTRATOR, "worker"]
            with (
                process([ORCHESTRATOR, "web"], web_env, tmp_path / "web.log", web_host),
                process([ORCHESTRATOR, "scheduler"], web_env, tmp_path / "scheduler.log", web_host),
                process(far_worker, worker_env, tmp_path / "worker.log", worker_host),
            ):
                await wait_web(f"http://{near}:{port}")
                await run_the_job(f"http://{near}:{port}", token, tmp_path, endpoint, web_host, worker_host)


async def wait_web(url: str) -> None:
    async with asyncio.timeout(60):
        while True:
            with contextlib.suppress(httpx.TransportError):
                async with httpx.AsyncClient(timeout=2) as client:
                    if (await client.get(f"{url}/healthz")).status_code == 200:
                        return
            await asyncio.sleep(0.2)


async def run_the_job(url: str, token: str, tmp: Path, endpoint: str, web_host: Path, worker_host: Path) -> None:
    def logs() -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in sorted(tmp.glob("*.log")))

    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as api:
        created = await api.post("/api/v1/runbooks/far/jobs", json={})
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        # watched while it looks at the page: the far worker streams frames, the web serves them
        frames = await live_frames(url, token, job_id, want=2)
        assert len(frames) >= 2, logs()
        assert all(frame[:3] == b"\xff\xd8\xff" for frame in frames)  # JPEG
        job = await job_in(api, job_id, "waiting_for_approval", "failed", seconds=120)
        assert job["status"] == "waiting_for_approval", (job, logs())
        assert job["robot"] and job["robot"].split(":")[0], job["robot"]
        approved = await api.post(f"/api/v1/jobs/{job_id}/approve", json={"comment": "from the web host"})
        assert approved.status_code == 200, approved.text
        job = await job_in(api, job_id, "completed", "failed", seconds=120)
        assert job["status"] == "completed", (job, logs())

        kinds = sorted({a["kind"] for a in job["artifacts"]})
        assert {"screenshot", "download", "export"} <= set(kinds), kinds
        for artifact in job["artifacts"]:
            answer = await api.get(artifact["url"])
            assert answer.status_code == 200, (artifact, answer.text)
            assert len(answer.content) == artifact["size"], artifact
        [download] = [a for a in job["artifacts"] if a["kind"] == "download"]
        served = (await api.get(download["url"])).content
        expected = (SITE_DIR / "files" / "report.csv").read_bytes()
        assert hashlib.sha256(served).hexdigest() == hashlib.sha256(expected).hexdigest()
        [export] = [a for a in job["artifacts"] if a["kind"] == "export"]
        assert json.loads((await api.get(export["url"])).content) == {"sent": True}
        shots = [a for a in job["artifacts"] if a["kind"] == "screenshot"]
        assert shots
        for shot in shots:
            picture = (await api.get(shot["url"])).content
            assert picture[:4] == b"\x89PNG" or picture[:3] == b"\xff\xd8\xff", shot

    # every file is in the shared store, none on either host's disk
    keys = bucket_keys(endpoint, "artifacts")
    assert len(keys) == len(job["artifacts"]), keys
    assert all(key.startswith(f"cluster/{job_id}/") for key in keys), keys
    for host in (web_host, worker_host):
        kept = [p for p in (host / "var").rglob("*") if p.is_file() and "artifacts" in p.parts]
        assert kept == [], kept
