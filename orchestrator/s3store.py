"""Artifact files in an S3 bucket (ORCH_ARTIFACTS_URL=s3://bucket/prefix), on AWS or any S3-compatible
store at ORCH_S3_ENDPOINT, through obstore. A row's path is the key under the prefix. Files larger
than one part go up as multipart uploads read a part at a time (never whole in memory), and reads
stream. Credentials and region come from the usual AWS_* variables (Settings.aws_environment)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import obstore
from obstore.exceptions import BaseError, NotFoundError
from obstore.store import S3Store

from orchestrator.artifacts import (
    CHUNK,
    ArtifactNotFound,
    ArtifactStore,
    ArtifactStoreUnavailable,
    Place,
    Reading,
)
from orchestrator.config import S3Location, Settings

if TYPE_CHECKING:
    from obstore import GetOptions, GetResult
    from obstore.store import ClientConfig, RetryConfig, S3Config

log = logging.getLogger(__name__)

#: Parts of a multipart upload (S3's least is 5 MiB), and how many go up at once: an upload holds about
#: one part more than that in memory (15 MiB), whatever the file's size. A file no larger than one part
#: goes up in one request.
PART = 5 * 1024 * 1024
PARTS_AT_ONCE = 2
#: How many keys one bulk delete names (S3's most).
DELETE_BATCH = 1000
#: The start-up check gives up soon: a store that is not there should stop the start, not stall it.
PROBE_RETRIES: RetryConfig = {"max_retries": 2, "retry_timeout": timedelta(seconds=15)}
NOT_THERE = (FileNotFoundError, NotFoundError)


class S3ArtifactStore(ArtifactStore):
    def __init__(self, where: S3Location, settings: Settings) -> None:
        super().__init__(settings.max_artifact_bytes)
        self.where = where
        self.endpoint = settings.s3_endpoint
        self._settings = settings
        try:
            self._store = _s3(where, settings)
        except BaseError as exc:
            raise ArtifactStoreUnavailable(
                f"ORCH_ARTIFACTS_URL={where}: the S3 store cannot be set up (ORCH_S3_ENDPOINT, AWS_*): {_reason(exc)}"
            ) from None

    def __repr__(self) -> str:
        return f"S3ArtifactStore({self.where}, endpoint={self.endpoint or 'AWS'})"

    async def check(self) -> None:
        """One listing of (at most) one key under the prefix: the bucket is there and these credentials may
        list it (deleting a run's files lists them)."""
        try:  # on a client of its own that gives up soon, made for this one check
            async for _ in obstore.list(_s3(self.where, self._settings, PROBE_RETRIES), chunk_size=1):
                break
        except BaseError as exc:
            at = f" at {self.endpoint}" if self.endpoint else ""
            raise ArtifactStoreUnavailable(
                f"ORCH_ARTIFACTS_URL={self.where}: the S3 store{at} does not answer: {_reason(exc)}"
            ) from None

    async def read(self, path: str) -> bytes:
        try:
            found = await obstore.get_async(self._store, self.key(path))
            return bytes(await found.bytes_async())
        except NOT_THERE:
            raise ArtifactNotFound(f"The file {path} is missing from the artifact store.") from None
        except BaseError as exc:
            raise self._unavailable("read", exc) from None

    async def open(self, path: str, start: int = 0, end: int | None = None) -> Reading | None:
        options: GetOptions = {}
        if end is not None:
            options["range"] = (start, end)
        elif start:
            options["range"] = {"offset": start}
        try:
            found = await obstore.get_async(self._store, self.key(path), options=options)
        except NOT_THERE:
            return None
        except BaseError as exc:
            raise self._unavailable("read", exc) from None
        low, high = found.range
        return Reading(found.meta["size"], low, high - low, _stream(found))

    async def delete(self, paths: list[str]) -> None:
        keys = [self.key(path) for path in paths]
        for batch in range(0, len(keys), DELETE_BATCH):
            await obstore.delete_async(self._store, keys[batch : batch + DELETE_BATCH])

    async def delete_job(self, job_id: str) -> None:
        keys = [meta["path"] async for batch in obstore.list(self._store, self.job_folder(job_id)) for meta in batch]
        if keys:
            await self.delete(keys)

    async def _write(self, place: Place, content: bytes) -> None:
        await obstore.put_async(
            self._store,
            place.key,
            content,
            attributes={"Content-Type": place.mime_type},
            chunk_size=PART,
            max_concurrency=PARTS_AT_ONCE,
        )

    async def _write_file(self, place: Place, source: Path) -> tuple[int, str]:
        size = (await asyncio.to_thread(source.stat)).st_size
        if size > self.max_bytes:
            raise self.too_large(place.display)
        if size <= PART:  # one request, and a part's worth of memory at most
            content = await asyncio.to_thread(source.read_bytes)
            if len(content) > self.max_bytes:
                raise self.too_large(place.display)
            await self._write(place, content)
            return len(content), hashlib.sha256(content).hexdigest()
        digest = hashlib.sha256()
        reader = await asyncio.to_thread(source.open, "rb")

        def next_part() -> bytes:
            part = reader.read(PART)
            digest.update(part)
            return part

        total = 0

        async def parts() -> AsyncIterator[bytes]:
            nonlocal total
            while part := await asyncio.to_thread(next_part):
                total += len(part)
                if total > self.max_bytes:  # it grew while being read
                    raise self.too_large(place.display)
                yield part

        try:
            await obstore.put_async(
                self._store,
                place.key,
                parts(),
                attributes={"Content-Type": place.mime_type},
                chunk_size=PART,
                max_concurrency=PARTS_AT_ONCE,
            )
        except BaseException:
            # obstore aborts the multipart upload; should a last request have made the object, remove it
            with contextlib.suppress(BaseError):
                await obstore.delete_async(self._store, place.key)
            raise
        finally:
            reader.close()
        return total, digest.hexdigest()

    async def _copy(self, key: str, place: Place) -> None:
        await obstore.copy_async(self._store, key, place.key)  # within the store: no bytes through here

    def _unavailable(self, doing: str, exc: BaseException) -> ArtifactStoreUnavailable:
        """The user's answer says the store is away; the log says why (no credentials are in obstore's text)."""
        log.warning("artifact store %s: could not %s: %s", self.where, doing, _reason(exc))
        return ArtifactStoreUnavailable()


def _s3(where: S3Location, settings: Settings, retry: RetryConfig | None = None) -> S3Store:
    aws = dict(settings.aws_environment)
    config: S3Config = {}
    if settings.s3_endpoint:
        config["endpoint"] = settings.s3_endpoint
    if aws.get("AWS_ACCESS_KEY_ID"):
        config["access_key_id"] = aws["AWS_ACCESS_KEY_ID"]
        config["secret_access_key"] = aws.get("AWS_SECRET_ACCESS_KEY", "")
    if aws.get("AWS_SESSION_TOKEN"):
        config["session_token"] = aws["AWS_SESSION_TOKEN"]
    if region := aws.get("AWS_REGION") or aws.get("AWS_DEFAULT_REGION"):
        config["region"] = region
    client: ClientConfig = {
        "allow_http": settings.s3_endpoint.startswith("http://"),
        "connect_timeout": timedelta(seconds=5),
        # a download streams at the pace of the person fetching it: no limit on the whole request, but a
        # store that sends nothing for a minute while read is given up on
        "timeout": timedelta(days=1),
        "read_timeout": timedelta(seconds=60),
    }
    return S3Store(where.bucket, prefix=where.prefix or None, config=config, client_options=client, retry_config=retry)


async def _stream(found: GetResult) -> AsyncGenerator[bytes, None]:
    async for chunk in found.stream(min_chunk_size=CHUNK):
        yield bytes(chunk)


_CODE = re.compile(r"<Code>([^<]{1,100})</Code>")
_STATUS = re.compile(r"status code: (\d{3} [^:]{1,40})")


def _reason(exc: BaseException) -> str:
    """obstore's error in a line: S3's error code and status when it answered, else its first line."""
    text = str(exc)
    code, status = _CODE.search(text), _STATUS.search(text)
    if code:
        return f"{code[1]}" + (f" ({status[1]})" if status else "")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first[:300]
