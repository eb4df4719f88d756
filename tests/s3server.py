"""A real S3-protocol server for tests: moto in server mode, run as its own process on a free port.

    with moto_server() as endpoint:          # "http://127.0.0.1:PORT"
        make_bucket(endpoint, "artifacts")
        ... ORCH_ARTIFACTS_URL=s3://artifacts/prefix, ORCH_S3_ENDPOINT=endpoint ...
        keys = bucket_keys(endpoint, "artifacts")

moto takes any credentials; CREDENTIALS are the ones the helpers use and a test may hand the app."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import boto3
import httpx

from tests.support import free_port

#: Made-up credentials (moto checks none); a test passes them as the AWS_* variables.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing-key-id",
    "AWS_SECRET_ACCESS_KEY": "testing-secret",
    "AWS_REGION": "us-east-1",
}


@contextlib.contextmanager
def moto_server(host: str = "127.0.0.1", seconds: float = 30) -> Iterator[str]:
    """moto's S3 server bound to `host` on a free port, until the block ends; yields its endpoint URL.
    The server is its own process (its own session, so stopping it stops nothing else)."""
    port = free_port(host)
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    endpoint = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    try:
        _wait_until_answering(endpoint, process, seconds)
        yield endpoint
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_answering(endpoint: str, process: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with {process.returncode} before {endpoint} answered")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{endpoint}/moto-api/", timeout=2).status_code < 500:
                return
        time.sleep(0.05)
    raise RuntimeError(f"moto server at {endpoint} did not answer within {seconds} s")


def client(endpoint: str) -> Any:
    """A boto3 S3 client of the server (the test's own view of the bucket, apart from the app's)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=CREDENTIALS["AWS_REGION"],
    )


def make_bucket(endpoint: str, name: str) -> None:
    client(endpoint).create_bucket(Bucket=name)


def bucket_keys(endpoint: str, name: str, prefix: str = "") -> list[str]:
    """Every key in the bucket (under `prefix`), sorted."""
    pages = client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=name, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def object_bytes(endpoint: str, name: str, key: str) -> bytes:
    body: bytes = client(endpoint).get_object(Bucket=name, Key=key)["Body"].read()
    return body
