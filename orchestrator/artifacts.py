"""Artifact files under ORCH_DATA_DIR/artifacts/{job}/{id}{ext}: server-made names, rows in the database.
Files made on disk (downloads, videos) are copied in chunks, never read into memory whole, and may be
at most ORCH_MAX_ARTIFACT_BYTES."""

from __future__ import annotations

import hashlib
import mimetypes
import secrets
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from orchestrator.config import CAPS
from orchestrator.db.tables import utcnow
from orchestrator.errors import OrchestratorError

KINDS = ("screenshot", "video", "export", "download", "attachment")
#: The largest artifact file: ORCH_MAX_ARTIFACT_BYTES (its default here; Services passes the settings').
MAX_BYTES = CAPS["max_artifact_bytes"][1]
CHUNK = 1024 * 1024


class ArtifactTooLarge(OrchestratorError):
    """The file is larger than the artifact store takes (ORCH_MAX_ARTIFACT_BYTES)."""

    status_code = 413


@dataclass(frozen=True)
class Stored:
    row: dict[str, Any]
    path: Path


@dataclass(frozen=True)
class _Place:
    artifact_id: str
    display: str
    relative: str
    path: Path


class ArtifactStore:
    def __init__(self, root: Path, max_bytes: int = MAX_BYTES) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def too_large(self, name: str) -> ArtifactTooLarge:
        return ArtifactTooLarge(
            f"{name} is larger than {self.max_bytes} bytes, the most an artifact may be (ORCH_MAX_ARTIFACT_BYTES)."
        )

    def save(
        self,
        job_id: str,
        kind: str,
        name: str,
        content: bytes,
        step_id: str | None = None,
        mime_type: str | None = None,
    ) -> Stored:
        """Write the file and return the row to insert (the caller inserts it with the step's other writes)."""
        place = self._place(job_id, kind, name)
        place.path.write_bytes(content)
        row = self._row(job_id, kind, place, step_id, mime_type, len(content), hashlib.sha256(content).hexdigest())
        return Stored(row, place.path)

    def save_file(
        self,
        job_id: str,
        kind: str,
        name: str,
        source: Path,
        step_id: str | None = None,
        mime_type: str | None = None,
    ) -> Stored:
        """`save` for a file on disk: copied a chunk at a time (blocking: call it in a thread); one larger
        than `max_bytes` is refused (ArtifactTooLarge) and nothing is kept."""
        place = self._place(job_id, kind, name)
        digest, size = hashlib.sha256(), 0
        try:
            with source.open("rb") as reader, place.path.open("wb") as writer:
                while chunk := reader.read(CHUNK):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise self.too_large(place.display)
                    digest.update(chunk)
                    writer.write(chunk)
        except BaseException:
            place.path.unlink(missing_ok=True)
            raise
        return Stored(self._row(job_id, kind, place, step_id, mime_type, size, digest.hexdigest()), place.path)

    def _place(self, job_id: str, kind: str, name: str) -> _Place:
        """A new artifact's id, display name and server-made path (its folder made)."""
        artifact_id = secrets.token_hex(8)
        display = PurePosixPath(name.replace("\\", "/")).name[:200] or f"{kind}-{artifact_id}"
        suffix = PurePosixPath(display).suffix.lower()
        suffix = suffix if suffix.isascii() and suffix[1:].isalnum() and len(suffix) <= 10 else ""
        relative = f"{job_id}/{artifact_id}{suffix}"
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        return _Place(artifact_id, display, relative, path)

    @staticmethod
    def _row(
        job_id: str, kind: str, place: _Place, step_id: str | None, mime_type: str | None, size: int, sha256: str
    ) -> dict[str, Any]:
        return {
            "id": place.artifact_id,
            "job_id": job_id,
            "step_id": step_id,
            "kind": kind,
            "name": place.display,
            "path": place.relative,
            "size": size,
            "mime_type": mime_type or mimetypes.guess_type(place.display)[0] or "application/octet-stream",
            "sha256": sha256,
            "created_at": utcnow(),
        }

    def path_of(self, relative: str) -> Path:
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError("artifact path escapes the artifact directory")
        return path

    def delete_job(self, job_id: str) -> None:
        folder = self.root / job_id
        if folder.is_dir():
            for file in folder.iterdir():
                file.unlink(missing_ok=True)
            folder.rmdir()
