"""Artifact files and their rows, behind one interface (`ArtifactStore`) with two stores, chosen from the
settings in `open_store`: a folder (`LocalStore`: ORCH_DATA_DIR/artifacts unless ORCH_ARTIFACTS_URL
names another) or an S3 bucket (`orchestrator/s3store.py`). Files get server-made keys
`{job}/{id}{ext}` (the row's `path`, relative to the folder or the bucket's prefix); a row's path that
would leave them is refused. Files made on disk (downloads, videos) are copied in chunks, never read
into memory whole, and may be at most ORCH_MAX_ARTIFACT_BYTES; reads stream back from the store."""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
import secrets
import shutil
import stat
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from orchestrator.config import CAPS, S3Location, Settings
from orchestrator.db.tables import utcnow
from orchestrator.errors import ArtifactNotFound, OrchestratorError

KINDS = ("screenshot", "video", "export", "download", "attachment")
#: The largest artifact file: ORCH_MAX_ARTIFACT_BYTES (its default here; Services passes the settings').
MAX_BYTES = CAPS["max_artifact_bytes"][1]
CHUNK = 1024 * 1024


class ArtifactTooLarge(OrchestratorError):
    """The file is larger than the artifact store takes (ORCH_MAX_ARTIFACT_BYTES)."""

    status_code = 413


class ArtifactPathRefused(ArtifactNotFound):
    """This artifact's stored path leads out of the artifact store; it is not served."""


class ArtifactStoreUnavailable(OrchestratorError):
    """The artifact store does not answer; try again later."""

    status_code = 503


@dataclass(frozen=True)
class Reading:
    """An artifact file being read: `length` bytes from `start` of its `size`, as chunks."""

    size: int
    start: int
    length: int
    chunks: AsyncGenerator[bytes, None]


@dataclass(frozen=True)
class Place:
    """Where a new artifact goes, and what its row will say."""

    job_id: str
    kind: str
    artifact_id: str
    display: str
    key: str
    mime_type: str


class ArtifactStore(ABC):
    """Where artifact files live. Saving returns the row to insert: the caller inserts it with the
    step's other writes. Every file is named by the server; rows' paths are checked before use."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes

    def too_large(self, name: str) -> ArtifactTooLarge:
        return ArtifactTooLarge(
            f"{name} is larger than {self.max_bytes} bytes, the most an artifact may be (ORCH_MAX_ARTIFACT_BYTES)."
        )

    async def save(
        self,
        job_id: str,
        kind: str,
        name: str,
        content: bytes,
        step_id: str | None = None,
        mime_type: str | None = None,
    ) -> dict[str, Any]:
        """Store the file (made in memory: a screenshot, an export, an upload); return its row."""
        place = self._place(job_id, kind, name, mime_type)
        await self._write(place, content)
        return self._row(place, step_id, len(content), hashlib.sha256(content).hexdigest())

    async def save_file(
        self,
        job_id: str,
        kind: str,
        name: str,
        source: Path,
        step_id: str | None = None,
        mime_type: str | None = None,
    ) -> dict[str, Any]:
        """`save` for a file on disk: copied a chunk at a time; one larger than `max_bytes` is refused
        (ArtifactTooLarge) and nothing is kept."""
        place = self._place(job_id, kind, name, mime_type)
        size, sha256 = await self._write_file(place, source)
        return self._row(place, step_id, size, sha256)

    async def copy(self, row: dict[str, Any], job_id: str) -> dict[str, Any]:
        """Another job's artifact file as a new one of `job_id` (a re-run's own copy of a file input)."""
        place = self._place(job_id, row["kind"], row["name"], row["mime_type"])
        await self._copy(self.key(row["path"]), place)
        return self._row(place, None, row["size"], row["sha256"])

    @abstractmethod
    async def read(self, path: str) -> bytes:
        """A whole (small) file by its row's path: ArtifactNotFound when it is not there."""

    @abstractmethod
    async def open(self, path: str, start: int = 0, end: int | None = None) -> Reading | None:
        """The file by its row's path, bytes `start` up to `end` (exclusive; None: to its end), read as
        it is sent; None when the file is not there."""

    @abstractmethod
    async def delete(self, paths: list[str]) -> None:
        """Remove these files (rows' paths); ones already gone are no error."""

    @abstractmethod
    async def delete_job(self, job_id: str) -> None:
        """Remove every file of the job."""

    @abstractmethod
    async def check(self) -> None:
        """At a process's start: the store answers, or ArtifactStoreUnavailable naming ORCH_ARTIFACTS_URL."""

    @abstractmethod
    async def _write(self, place: Place, content: bytes) -> None: ...

    @abstractmethod
    async def _write_file(self, place: Place, source: Path) -> tuple[int, str]:
        """Copy the file in; its size and sha256. Refused past `max_bytes`, keeping nothing."""

    @abstractmethod
    async def _copy(self, key: str, place: Place) -> None: ...

    def key(self, path: str) -> str:
        """A row's path as a key of this store; refused when it would lead out of it: absolute, with
        empty, . or .. parts, a backslash or a control character."""
        parts = path.split("/")
        if not path.isprintable() or "\\" in path or any(part in ("", ".", "..") for part in parts):
            raise ArtifactPathRefused()
        return path

    @staticmethod
    def job_folder(job_id: str) -> str:
        """A job's id as the one path part its files are under (ids are server-made; checked all the same)."""
        if not job_id.isprintable() or any(ch in job_id for ch in "/\\") or job_id in ("", ".", ".."):
            raise ValueError(f"{job_id!r} is not a job id")
        return job_id

    def _place(self, job_id: str, kind: str, name: str, mime_type: str | None) -> Place:
        """A new artifact's id, display name and server-made key."""
        artifact_id = secrets.token_hex(8)
        display = PurePosixPath(name.replace("\\", "/")).name[:200] or f"{kind}-{artifact_id}"
        suffix = PurePosixPath(display).suffix.lower()
        suffix = suffix if suffix.isascii() and suffix[1:].isalnum() and len(suffix) <= 10 else ""
        key = f"{self.job_folder(job_id)}/{artifact_id}{suffix}"
        mime = mime_type or mimetypes.guess_type(display)[0] or "application/octet-stream"
        return Place(job_id, kind, artifact_id, display, key, mime)

    @staticmethod
    def _row(place: Place, step_id: str | None, size: int, sha256: str) -> dict[str, Any]:
        return {
            "id": place.artifact_id,
            "job_id": place.job_id,
            "step_id": step_id,
            "kind": place.kind,
            "name": place.display,
            "path": place.key,
            "size": size,
            "mime_type": place.mime_type,
            "sha256": sha256,
            "created_at": utcnow(),
        }


class LocalStore(ArtifactStore):
    """Files in a folder on this machine's disk (the default: ORCH_DATA_DIR/artifacts)."""

    def __init__(self, root: Path, max_bytes: int = MAX_BYTES) -> None:
        super().__init__(max_bytes)
        self.root = root

    def path_of(self, path: str) -> Path:
        """A row's path as a file in the folder; refused when it leads out (through a link, too)."""
        found = (self.root / self.key(path)).resolve()
        if not found.is_relative_to(self.root.resolve()):
            raise ArtifactPathRefused()
        return found

    async def read(self, path: str) -> bytes:
        try:
            return await asyncio.to_thread(self.path_of(path).read_bytes)
        except FileNotFoundError:
            raise ArtifactNotFound(f"The file {path} is missing from the artifact store.") from None

    async def open(self, path: str, start: int = 0, end: int | None = None) -> Reading | None:
        file = self.path_of(path)
        try:
            found = await asyncio.to_thread(file.stat)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(found.st_mode):
            return None
        end = found.st_size if end is None else min(end, found.st_size)
        return Reading(found.st_size, start, max(0, end - start), _chunks(file, start, end))

    async def delete(self, paths: list[str]) -> None:
        for file in [self.path_of(path) for path in paths]:
            await asyncio.to_thread(file.unlink, missing_ok=True)

    async def delete_job(self, job_id: str) -> None:
        folder = self.root / self.job_folder(job_id)
        if await asyncio.to_thread(folder.is_dir):
            await asyncio.to_thread(shutil.rmtree, folder)

    async def check(self) -> None:
        # Nothing is made here: the folder is made by the first process that writes a file, as its own
        # user (a web started as root must not leave a folder an unprivileged worker cannot write).
        if self.root.exists() and not self.root.is_dir():
            raise ArtifactStoreUnavailable(f"ORCH_ARTIFACTS_URL: {self.root} is not a folder.")

    def _target(self, place: Place) -> Path:
        path = self.root / place.key
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    async def _write(self, place: Place, content: bytes) -> None:
        await asyncio.to_thread(lambda: self._target(place).write_bytes(content))

    async def _write_file(self, place: Place, source: Path) -> tuple[int, str]:
        return await asyncio.to_thread(self._copy_in, place, source)

    def _copy_in(self, place: Place, source: Path) -> tuple[int, str]:
        """The blocking copy, a chunk at a time (in a thread)."""
        target = self._target(place)
        digest, size = hashlib.sha256(), 0
        try:
            with source.open("rb") as reader, target.open("wb") as writer:
                while chunk := reader.read(CHUNK):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise self.too_large(place.display)
                    digest.update(chunk)
                    writer.write(chunk)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return size, digest.hexdigest()

    async def _copy(self, key: str, place: Place) -> None:
        source = self.path_of(key)
        await asyncio.to_thread(lambda: shutil.copyfile(source, self._target(place)))


async def _chunks(file: Path, start: int, end: int) -> AsyncGenerator[bytes, None]:
    """Bytes `start` to `end` of the file, a chunk at a time, each read in a thread."""
    reader = await asyncio.to_thread(file.open, "rb")
    try:
        await asyncio.to_thread(reader.seek, start)
        left = end - start
        while left > 0 and (chunk := await asyncio.to_thread(reader.read, min(CHUNK, left))):
            left -= len(chunk)
            yield chunk
    finally:
        reader.close()


def open_store(settings: Settings) -> ArtifactStore:
    """The artifact store the settings name (ORCH_ARTIFACTS_URL): the one place it is chosen."""
    where = settings.artifacts
    if isinstance(where, S3Location):
        from orchestrator.s3store import S3ArtifactStore  # noqa: PLC0415 - obstore loads only where S3 is used

        return S3ArtifactStore(where, settings)
    return LocalStore(where, settings.max_artifact_bytes)
