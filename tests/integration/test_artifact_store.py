"""Artifacts any web process can serve (issue 18): with ORCH_ARTIFACTS_URL=s3://bucket/prefix, against a
real S3-protocol server (moto, its own process), a browser job's screenshots, download and export, the
files uploaded with a job or a reported run, and a re-run's copies land in the bucket; the download route
streams them back byte for byte with the same headers as from a folder (one byte range too); the size cap
holds; deleting a run deletes its objects; a row's path that would leave the store is refused by both
stores; and a bad setting or a missing bucket stops the start with a message naming the variable."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select

from orchestrator import history, ingest, jobs
from orchestrator.artifacts import ArtifactPathRefused, ArtifactStore, ArtifactTooLarge, LocalStore, open_store
from orchestrator.config import S3Location, Settings
from orchestrator.db import tables as t
from orchestrator.db.engine import reading, writing
from orchestrator.db.tables import utcnow
from orchestrator.services import Services
from tests.integration.conftest import Env, bearer, http_client, live_server, open_env, step
from tests.integration.test_api import UPLOAD_INPUT
from tests.integration.test_files_and_video import DOWNLOAD
from tests.s3server import CREDENTIALS, bucket_keys, client, make_bucket, moto_server, object_bytes
from tests.support import ROOT, SITE_DIR, env_without_orch

BUCKET = "orch-artifacts"
IDENTITY = {"Accept-Encoding": "identity"}  # the bytes as stored, with their Content-Length
FILES = """
name: s3-files
settings: {step_timeout: 20}
steps:
  - {id: open, action: goto, url: "{{ site.url }}/data.html"}
  - {id: shot, action: screenshot, name: page}
  - {id: report, action: download, selector: "#report", save_as: report}
  - {id: out, action: export, format: csv, data: [{sku: A-1, qty: 2}, {sku: B-2, qty: 5}], filename: stock.csv}
"""
EXPORT = """
name: NAME
steps:
  - {id: out, action: export, format: json, data: {run: NAME}, filename: out.json}
"""


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        make_bucket(endpoint, BUCKET)
        yield endpoint


@pytest.fixture
def s3_settings(settings: Settings, s3_endpoint: str, tmp_path: Path) -> Settings:
    """The test's settings with the bucket as the artifact store, under a prefix of the test's own."""
    return replace(
        settings,
        artifacts_url=f"s3://{BUCKET}/runs/{tmp_path.name}",
        s3_endpoint=s3_endpoint,
        aws_environment=tuple(CREDENTIALS.items()),
    )


@pytest.fixture
async def s3_env(s3_settings: Settings, site_url: str) -> AsyncIterator[Env]:
    async with open_env(s3_settings, site_url) as env:
        yield env


def prefix_of(settings: Settings) -> str:
    where = settings.artifacts
    assert isinstance(where, S3Location)
    return where.prefix


def keys(env: Env) -> list[str]:
    """The bucket's keys under the test's prefix, as the store's own paths."""
    prefix = prefix_of(env.settings) + "/"
    return [key.removeprefix(prefix) for key in bucket_keys(env.settings.s3_endpoint, BUCKET, prefix)]


def stored(env: Env, path: str) -> bytes:
    return object_bytes(env.settings.s3_endpoint, BUCKET, f"{prefix_of(env.settings)}/{path}")


async def rows_of(env: Env, job_id: str) -> list[dict[str, Any]]:
    async with reading(env.svc.engine) as conn:
        found = await conn.execute(select(t.artifacts).where(t.artifacts.c.job_id == job_id))
        return [dict(row) for row in found.mappings()]


# -- a browser job's files ----------------------------------------------------------------------


async def test_a_browser_jobs_screenshots_download_and_export_land_in_the_bucket_and_are_served_as_stored(
    s3_env: Env,
) -> None:
    job = await s3_env.run(FILES)
    assert job["status"] == "completed", job["error"]
    rows = await rows_of(s3_env, job["id"])
    assert {"screenshot", "download", "export"} <= {row["kind"] for row in rows}, rows
    assert keys(s3_env) == sorted(row["path"] for row in rows)
    assert all(row["path"].startswith(f"{job['id']}/") for row in rows)
    assert not (s3_env.settings.data_dir / "artifacts").exists()  # nothing on this machine's disk
    for row in rows:
        content = stored(s3_env, row["path"])
        assert (len(content), hashlib.sha256(content).hexdigest()) == (row["size"], row["sha256"])
    by_kind = {row["kind"]: row for row in rows}
    assert stored(s3_env, by_kind["download"]["path"]) == (SITE_DIR / "files" / "report.csv").read_bytes()
    assert stored(s3_env, by_kind["export"]["path"]) == b"sku,qty\r\nA-1,2\r\nB-2,5\r\n"

    async with http_client(s3_env.settings, role="viewer") as http:
        for artifact in job["artifacts"]:
            answer = await http.get(artifact["url"], headers=IDENTITY)
            [row] = [r for r in rows if r["id"] == artifact["id"]]
            assert answer.status_code == 200, answer.text
            assert answer.content == stored(s3_env, row["path"])
            assert answer.headers["content-type"].split(";")[0] == row["mime_type"]
            assert answer.headers["content-length"] == str(row["size"])
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["cache-control"] == "no-store"
            inline = "inline" if row["mime_type"] == "image/png" else "attachment"
            assert answer.headers["content-disposition"] == f'{inline}; filename="{row["name"]}"'
        shot = next(a for a in job["artifacts"] if a["name"] == "page.png")
        as_file = await http.get(shot["url"], params={"download": ""})
        assert as_file.headers["content-disposition"] == 'attachment; filename="page.png"'

        report = by_kind["download"]
        url = f"/api/v1/jobs/{job['id']}/artifacts/{report['id']}"
        content = stored(s3_env, report["path"])
        part = await http.get(url, headers={**IDENTITY, "Range": "bytes=3-9"})
        assert part.status_code == 206
        assert part.content == content[3:10]
        assert part.headers["content-range"] == f"bytes 3-9/{len(content)}"
        tail = await http.get(url, headers={**IDENTITY, "Range": "bytes=-4"})
        assert (tail.status_code, tail.content) == (206, content[-4:])
        beyond = await http.get(url, headers={"Range": f"bytes={len(content)}-"})
        assert (beyond.status_code, beyond.headers["content-range"]) == (416, f"bytes */{len(content)}")
        head = await http.head(url, headers=IDENTITY)
        assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", str(len(content)))


async def test_the_folder_store_answers_with_the_same_headers_as_the_bucket(
    s3_env: Env, settings: Settings, site_url: str
) -> None:
    """The same job in the default folder (ORCH_DATA_DIR/artifacts, as before) and in the bucket: each
    artifact answers with the same headers, and the folder's files are where they always were."""
    answers = []
    for env_settings in (settings, s3_env.settings):
        async with open_env(env_settings, site_url) as env:
            job = await env.run(FILES)
            assert job["status"] == "completed", job["error"]
            async with http_client(env.settings) as http:
                answers.append(
                    {
                        a["name"]: {k: v for k, v in (await http.get(a["url"], headers=IDENTITY)).headers.items()}
                        for a in job["artifacts"]
                        if a["kind"] != "screenshot" or a["name"] == "page.png"
                    }
                )
            if env_settings is settings:
                assert settings.artifacts == settings.data_dir / "artifacts"
                for artifact in job["artifacts"]:
                    assert env.artifact_path(job["id"], artifact["id"]).stat().st_size == artifact["size"]
    local, remote = answers
    assert sorted(local) == sorted(remote) == ["page.png", "report.csv", "stock.csv"]
    for name in local:
        for header in ("content-type", "content-disposition", "x-content-type-options", "cache-control"):
            assert local[name][header] == remote[name][header], (name, header)
        assert "content-length" in local[name] and "content-length" in remote[name]


# -- large files ---------------------------------------------------------------------------------


@contextlib.contextmanager
def big_file_site(folder: Path, size: int) -> Iterator[tuple[str, bytes]]:
    """A page whose link downloads `size` random bytes; yields its URL and the bytes."""
    folder.mkdir()
    content = os.urandom(size)
    (folder / "big.bin").write_bytes(content)
    (folder / "index.html").write_text('<!doctype html><a id="report" href="big.bin" download="big.bin">Get it</a>')
    handler = partial(Quiet, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html", content
    finally:
        server.shutdown()
        server.server_close()


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        return


async def test_a_large_download_goes_up_in_parts_and_streams_back_without_being_held_whole(
    s3_env: Env, tmp_path: Path
) -> None:
    size = 40 * 1024 * 1024  # eight parts: more than an upload holds at once (orchestrator/s3store.py)
    with big_file_site(tmp_path / "big", size) as (url, content):
        tracemalloc.start()
        try:
            job = await s3_env.run(DOWNLOAD.replace("URL", url))
            _, stored_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert job["status"] == "completed", job["error"]
    [row] = [r for r in await rows_of(s3_env, job["id"]) if r["kind"] == "download"]
    assert (row["size"], row["sha256"]) == (size, hashlib.sha256(content).hexdigest())
    key = f"{prefix_of(s3_env.settings)}/{row['path']}"
    etag = client(s3_env.settings.s3_endpoint).head_object(Bucket=BUCKET, Key=key)["ETag"]
    assert etag.strip('"').endswith("-8"), etag  # a multipart upload of eight 5 MiB parts
    assert stored_peak < size // 2, stored_peak  # read a part at a time, not whole

    headers = {**await bearer(s3_env.settings, "viewer"), **IDENTITY}
    async with live_server(s3_env.settings) as base, httpx.AsyncClient(base_url=base, headers=headers) as http:
        digest, received = hashlib.sha256(), 0
        tracemalloc.start()
        try:
            async with http.stream("GET", f"/api/v1/jobs/{job['id']}/artifacts/{row['id']}", timeout=60) as answer:
                assert answer.status_code == 200
                assert answer.headers["content-length"] == str(size)
                assert answer.headers["content-disposition"] == 'attachment; filename="big.bin"'
                async for chunk in answer.aiter_raw():
                    digest.update(chunk)
                    received += len(chunk)
            _, served_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert (received, digest.hexdigest()) == (size, row["sha256"])
    assert served_peak < size // 4, served_peak  # streamed a chunk at a time from the bucket to the client


# -- the size cap --------------------------------------------------------------------------------


async def test_the_cap_refuses_a_download_too_large_and_nothing_of_it_is_kept(
    s3_settings: Settings, site_url: str
) -> None:
    size = (SITE_DIR / "files" / "report.csv").stat().st_size
    async with open_env(replace(s3_settings, max_artifact_bytes=size - 1), site_url) as env:
        job = await env.run(FILES)
        rows = await rows_of(env, job["id"])
        assert job["status"] == "failed"
        error = step(job, "report")["error"]
        assert "report.csv" in error and f"{size - 1} bytes" in error and "ORCH_MAX_ARTIFACT_BYTES" in error, error
        assert "download" not in {row["kind"] for row in rows}
        assert keys(env) == sorted(row["path"] for row in rows)  # its screenshots, and nothing else


@pytest.mark.parametrize("size", [4096, 12 * 1024 * 1024], ids=["one request", "multipart"])
async def test_the_bucket_store_refuses_a_file_over_the_cap_and_keeps_nothing(
    s3_settings: Settings, tmp_path: Path, size: int
) -> None:
    async with open_env(replace(s3_settings, max_artifact_bytes=size - 1)) as env:
        source = tmp_path / "big.bin"
        source.write_bytes(os.urandom(size))
        with pytest.raises(ArtifactTooLarge, match=r"big\.bin is larger than .* \(ORCH_MAX_ARTIFACT_BYTES\)"):
            await env.svc.store.save_file("job-1", "download", "big.bin", source)
        assert keys(env) == []
        source.write_bytes(source.read_bytes()[: size - 1])
        row = await env.svc.store.save_file("job-1", "download", "big.bin", source)
        assert keys(env) == [row["path"]]
        assert stored(env, row["path"]) == source.read_bytes()


# -- deleting runs -------------------------------------------------------------------------------


async def test_deleting_a_run_deletes_its_objects_and_no_others(s3_env: Env) -> None:
    first = await s3_env.run(EXPORT.replace("NAME", "first"))
    second = await s3_env.run(EXPORT.replace("NAME", "second"))
    assert first["status"] == second["status"] == "completed"
    assert {key.split("/")[0] for key in keys(s3_env)} == {first["id"], second["id"]}
    async with http_client(s3_env.settings) as http:
        answer = await http.delete(f"/api/v1/runbooks/first/history/{first['id']}")
        assert answer.status_code == 204, answer.text
    assert [key.split("/")[0] for key in keys(s3_env)] == [second["id"]]
    await history.remove(s3_env.svc, "second", second["id"], "tests")
    assert keys(s3_env) == []


async def test_a_jobs_objects_are_its_folder_and_not_those_of_an_id_it_begins(s3_env: Env) -> None:
    store = s3_env.svc.store
    mine = [await store.save("abc", "export", f"{n}.txt", b"x") for n in range(3)]
    other = await store.save("abcd", "export", "other.txt", b"y")
    assert sorted(keys(s3_env)) == sorted([row["path"] for row in mine] + [other["path"]])
    await store.delete_job("abc")
    assert keys(s3_env) == [other["path"]]


# -- files that come with a job or a report -------------------------------------------------------


async def test_a_jobs_file_input_lands_in_the_bucket_is_uploaded_by_the_run_and_copied_for_a_rerun(
    s3_env: Env,
) -> None:
    content = b"hello from the operator\n"
    s3_env.write(UPLOAD_INPUT)
    body = {"filename": "note.txt", "content_type": "text/plain", "data_base64": base64.b64encode(content).decode()}
    async with http_client(s3_env.settings) as http:
        created = await http.post("/api/v1/runbooks/upload-input/jobs", json={"inputs": {"attachment": body}})
        assert created.status_code == 201, created.text
        job = created.json()
        [attachment] = await rows_of(s3_env, job["id"])
        assert keys(s3_env) == [attachment["path"]]
        assert stored(s3_env, attachment["path"]) == content
        await s3_env.work()
        done = await jobs.get(s3_env.svc, job["id"])
        assert done["status"] == "completed", done["error"]
        assert step(done, "read")["captured"]["uploaded"] == f"note.txt|{len(content)}|{content.decode()}".strip()

        again = await http.post(f"/api/v1/jobs/{job['id']}/rerun")
        assert again.status_code == 201, again.text
        [copy] = [r for r in await rows_of(s3_env, again.json()["id"]) if r["kind"] == "attachment"]
        assert copy["path"] != attachment["path"] and stored(s3_env, copy["path"]) == content
        assert (copy["size"], copy["sha256"]) == (attachment["size"], attachment["sha256"])
        deleted = await http.delete(f"/api/v1/runbooks/upload-input/history/{job['id']}")
        assert deleted.status_code == 204
        assert copy["path"] in keys(s3_env)  # the re-run keeps its own copy
        served = await http.get(f"/api/v1/jobs/{again.json()['id']}/artifacts/{copy['id']}")
        assert served.content == content


async def test_files_sent_with_a_reported_run_land_in_the_bucket_and_are_served(s3_env: Env) -> None:
    pdf, log = b"%PDF-1.4 " + os.urandom(3000), b"step 1 ok\nstep 2 ok\n"
    async with http_client(s3_env.settings, role="operator") as http:
        reported = await http.post(
            "/api/v1/ingest/jobs", json={"process": "bot", "source": "rpa", "external_id": "r-1", "status": "running"}
        )
        assert reported.status_code == 201, reported.text
        job_id = reported.json()["id"]
        sent = await http.post(
            f"/api/v1/ingest/jobs/{job_id}/files",
            files=[("file", ("scan.pdf", pdf, "application/pdf")), ("file", ("run.log", log, "text/plain"))],
        )
        assert sent.status_code == 201, sent.text
        files = {f["name"]: f for f in sent.json()["files"]}
        rows = {row["name"]: row for row in await rows_of(s3_env, job_id)}
        assert keys(s3_env) == sorted(row["path"] for row in rows.values())
        assert stored(s3_env, rows["scan.pdf"]["path"]) == pdf and stored(s3_env, rows["run.log"]["path"]) == log
        for name, content in (("scan.pdf", pdf), ("run.log", log)):
            answer = await http.get(files[name]["url"])
            assert answer.content == content
        missing = await http.post("/api/v1/ingest/jobs/nope/files", files=[("file", ("x.txt", b"x", "text/plain"))])
        assert missing.status_code == 404
        assert len(keys(s3_env)) == 2


# -- hostile paths -------------------------------------------------------------------------------

HOSTILE = ["../secret.txt", "/etc/passwd", "job/../../secret.txt", "job//x", "..\\secret.txt", "job/x\x00.png", ""]


@pytest.fixture(params=["folder", "bucket"])
def any_store(request: pytest.FixtureRequest, settings: Settings, s3_settings: Settings) -> ArtifactStore:
    return open_store(settings if request.param == "folder" else s3_settings)


@pytest.mark.parametrize("path", HOSTILE)
async def test_a_row_path_that_leaves_the_store_is_refused_by_both_stores(any_store: ArtifactStore, path: str) -> None:
    row = {"kind": "attachment", "name": "x.txt", "mime_type": "text/plain", "path": path, "size": 1, "sha256": ""}
    for use in (
        any_store.read(path),
        any_store.open(path),
        any_store.delete([path]),
        any_store.copy(row, "job-2"),
    ):
        with pytest.raises(ArtifactPathRefused):
            await use


@pytest.mark.parametrize("job_id", ["..", ".", "", "job/..", "..\\x"])
async def test_a_job_id_that_is_not_one_path_part_is_refused_by_both_stores(
    any_store: ArtifactStore, job_id: str
) -> None:
    with pytest.raises(ValueError, match="not a job id"):
        await any_store.delete_job(job_id)
    with pytest.raises(ValueError, match="not a job id"):
        await any_store.save(job_id, "export", "x.txt", b"x")


@pytest.mark.parametrize("where", ["folder", "bucket"])
async def test_the_download_route_refuses_a_row_whose_path_leads_out_of_the_store(
    where: str, settings: Settings, s3_settings: Settings
) -> None:
    secret = b"root:secret outside the artifact store"
    chosen = settings if where == "folder" else s3_settings
    if where == "folder":
        (settings.data_dir / "secret.txt").write_bytes(secret)  # beside ORCH_DATA_DIR/artifacts
    else:  # beside the prefix, in the same bucket
        runs = prefix_of(s3_settings).rsplit("/", 1)[0]
        client(s3_settings.s3_endpoint).put_object(Bucket=BUCKET, Key=f"{runs}/secret.txt", Body=secret)
    async with open_env(chosen) as env:
        job, _ = await ingest.report(
            env.svc, {"process": "bot", "source": "rpa", "external_id": "h", "status": "completed"}, "tests"
        )
        rows = [
            {
                "id": f"a{n}",
                "job_id": job["id"],
                "kind": "attachment",
                "name": "x.txt",
                "path": path,
                "size": len(secret),
                "mime_type": "text/plain",
                "sha256": hashlib.sha256(secret).hexdigest(),
                "created_at": utcnow(),
            }
            for n, path in enumerate(["../secret.txt", "x/../../secret.txt", str(settings.data_dir / "secret.txt")])
        ]
        async with writing(env.svc.engine) as conn:
            await conn.execute(insert(t.artifacts), rows)
        async with http_client(env.settings, role="viewer") as http:
            for row in rows:
                answer = await http.get(f"/api/v1/jobs/{job['id']}/artifacts/{row['id']}")
                assert answer.status_code == 404, (row["path"], answer.status_code)
                assert b"root:" not in answer.content


async def test_a_link_out_of_the_artifact_folder_is_refused(settings: Settings, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"secret")
    store = LocalStore(settings.data_dir / "artifacts")
    store.root.mkdir(parents=True, exist_ok=True)
    (store.root / "job").mkdir()
    (store.root / "job" / "link.txt").symlink_to(outside)
    with pytest.raises(ArtifactPathRefused):
        await store.open("job/link.txt")


# -- settings and start ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://files.example.com/x", "ftp:// is neither"),
        ("s3://", "must name a bucket"),
        ("s3:///prefix", "must name a bucket"),
        ("s3://Not_A_Bucket/x", "not an S3 bucket name"),
        ("s3://bucket:9000/x", "not an S3 bucket name"),
        ("s3://bucket/runs/../other", ". or .. parts"),
        ("s3://AKIDEXAMPLE:wJalrXUtnFEMI@bucket/x", "credentials go in AWS_* variables"),
        ("s3://bucket/x?versionId=1", "s3://bucket/prefix alone"),
    ],
)
def test_a_bad_artifacts_url_stops_the_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str, says: str
) -> None:
    monkeypatch.setenv("ORCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ORCH_ARTIFACTS_URL", url)
    with pytest.raises(ValueError, match="ORCH_ARTIFACTS_URL") as raised:
        Settings.from_env()
    assert says in str(raised.value)
    assert "wJalrXUtnFEMI" not in str(raised.value)


def test_a_bad_s3_endpoint_stops_the_start_naming_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ORCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ORCH_ARTIFACTS_URL", "s3://bucket/x")
    for bad in ("ftp://store:9000", "store:9000", "http://user:pass@store:9000", "http://store:99999", "http://[::1"):
        monkeypatch.setenv("ORCH_S3_ENDPOINT", bad)
        with pytest.raises(ValueError, match="ORCH_S3_ENDPOINT"):
            Settings.from_env()


def test_the_store_settings_reach_child_processes_and_no_secret_is_in_their_repr(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ORCH_DATA_DIR", str(tmp_path))
    for name in ("ORCH_ARTIFACTS_URL", "ORCH_S3_ENDPOINT", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    default = Settings.from_env()
    assert default.artifacts == default.artifacts_dir == tmp_path.resolve() / "artifacts"  # as it always was
    monkeypatch.setenv("ORCH_ARTIFACTS_URL", "s3://orch-files/runs/prod/")
    monkeypatch.setenv("ORCH_S3_ENDPOINT", "http://127.0.0.1:9000/")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-very-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    settings = Settings.from_env()
    assert settings.artifacts == S3Location("orch-files", "runs/prod")
    assert "wJalrXUtnFEMI" not in repr(settings) and "AKIDEXAMPLE" not in repr(settings)
    assert "wJalrXUtnFEMI" not in repr(open_store(settings))
    environ = settings.environment()
    assert environ["ORCH_S3_ENDPOINT"] == "http://127.0.0.1:9000"
    assert environ["AWS_SECRET_ACCESS_KEY"] == "wJalrXUtnFEMI-very-secret"
    for name in list(environ):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    child = Settings.from_env()
    assert (child.artifacts, child.s3_endpoint, child.aws_environment) == (
        settings.artifacts,
        settings.s3_endpoint,
        settings.aws_environment,
    )
    with pytest.raises(RuntimeError, match="ORCH_ARTIFACTS_URL is an S3 store"):
        settings.artifacts_dir  # noqa: B018 - read for its error


async def test_another_folder_as_the_artifact_store(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "shared" / "artifacts"
    async with open_env(replace(settings, artifacts_url=str(folder))) as env:
        job = await env.run(EXPORT.replace("NAME", "elsewhere"))
        [artifact] = job["artifacts"]
        assert (folder / job["id"]).is_dir()
        [file] = (folder / job["id"]).iterdir()
        assert file.read_bytes() == b'{\n  "run": "elsewhere"\n}'
        async with http_client(env.settings) as http:
            assert (await http.get(artifact["url"])).content == file.read_bytes()
    assert not (settings.data_dir / "artifacts").exists()


async def test_a_missing_bucket_stops_a_process_at_its_start_naming_the_setting(
    s3_settings: Settings, tmp_path: Path
) -> None:
    missing = replace(s3_settings, artifacts_url="s3://no-such-bucket/runs")
    with pytest.raises(Exception, match=r"ORCH_ARTIFACTS_URL=s3://no-such-bucket/runs: .* NoSuchBucket"):
        await Services.open(missing)
    environ = {**env_without_orch(), **missing.environment(), "AWS_SECRET_ACCESS_KEY": "not-to-be-shown"}
    started = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "worker"],
        env=environ,
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )
    output = (started.stdout + started.stderr).decode()
    assert started.returncode != 0, output[-2000:]
    assert "ORCH_ARTIFACTS_URL=s3://no-such-bucket/runs" in output and "NoSuchBucket" in output, output[-2000:]
    assert "not-to-be-shown" not in output


async def test_a_store_that_does_not_answer_stops_the_start(s3_settings: Settings) -> None:
    away = replace(s3_settings, s3_endpoint="http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(Exception, match=r"ORCH_ARTIFACTS_URL=.* the S3 store at http://127\.0\.0\.1:9 does not answer"):
        await Services.open(away)
