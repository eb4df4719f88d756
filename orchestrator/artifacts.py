"""Artifact files under ORCH_DATA_DIR/artifacts/{job}/{id}{ext}: server-made names, rows in the database."""

from __future__ import annotations

import hashlib
import mimetypes
import secrets
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from orchestrator.db.tables import utcnow

KINDS = ("screenshot", "video", "export", "download", "attachment")


@dataclass(frozen=True)
class Stored:
    row: dict[str, Any]
    path: Path


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root

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
        artifact_id = secrets.token_hex(8)
        display = PurePosixPath(name.replace("\\", "/")).name[:200] or f"{kind}-{artifact_id}"
        suffix = PurePosixPath(display).suffix.lower()
        suffix = suffix if suffix.isascii() and suffix[1:].isalnum() and len(suffix) <= 10 else ""
        relative = f"{job_id}/{artifact_id}{suffix}"
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        mime = mime_type or mimetypes.guess_type(display)[0] or "application/octet-stream"
        row = {
            "id": artifact_id,
            "job_id": job_id,
            "step_id": step_id,
            "kind": kind,
            "name": display,
            "path": relative,
            "size": len(content),
            "mime_type": mime,
            "sha256": hashlib.sha256(content).hexdigest(),
            "created_at": utcnow(),
        }
        return Stored(row, path)

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
