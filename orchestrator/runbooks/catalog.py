"""The runbooks directory: parsed files, their problems, and their versions in the database."""

from __future__ import annotations

import asyncio
import difflib
import logging
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.db import tables as t
from orchestrator.db.engine import reading, writing
from orchestrator.errors import RunbookNotFound
from orchestrator.runbooks.loader import Problem, RunbookInvalid, content_hash, parse, read
from orchestrator.runbooks.redaction import masked_source
from orchestrator.runbooks.schema import Runbook
from orchestrator.views import iso

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Version:
    id: int
    runbook: Runbook
    number: int
    hash: str
    source: str


@dataclass
class _File:
    stamp: tuple[float, int]
    runbook: Runbook | None
    source: str
    problems: list[Problem] = field(default_factory=list)


class Catalog:
    """Loads every *.yaml / *.yml in a directory; a bad file is reported and never blocks the others."""

    def __init__(self, directory: Path, engine: AsyncEngine, min_interval: float = 1.0) -> None:
        self.directory = directory
        self._engine = engine
        self._files: dict[Path, _File] = {}
        self._versions: dict[str, Version] = {}
        self._min_interval = min_interval
        self._scanned_at = 0.0
        self._lock = asyncio.Lock()

    @property
    def problems(self) -> list[Problem]:
        return [p for f in self._files.values() for p in f.problems]

    async def refresh(self, force: bool = False) -> None:
        """Re-read changed files and record new versions (at most once per min_interval)."""
        async with self._lock:
            if not force and time.monotonic() - self._scanned_at < self._min_interval:
                return
            changed = await asyncio.to_thread(self._scan)
            for runbook, source in changed:
                self._versions[runbook.name] = await record_version(self._engine, runbook, source)
            current = {f.runbook.name for f in self._files.values() if f.runbook}
            for name in set(self._versions) - current:
                del self._versions[name]
            self._scanned_at = time.monotonic()

    def _scan(self) -> list[tuple[Runbook, str]]:
        paths = sorted([*self.directory.glob("*.yaml"), *self.directory.glob("*.yml")])
        for gone in set(self._files) - set(paths):
            del self._files[gone]
        changed = []
        for path in paths:
            stamp = _stamp(path)
            if path in self._files and self._files[path].stamp == stamp:
                continue
            self._files[path] = loaded = _load(path, stamp)
            if loaded.runbook:
                changed.append((loaded.runbook, loaded.source))
        return changed

    def versions(self) -> list[Version]:
        return sorted(self._versions.values(), key=lambda v: v.runbook.name)

    async def get(self, name: str) -> Version:
        await self.refresh()
        try:
            return self._versions[name]
        except KeyError:
            raise RunbookNotFound(f"No runbook is named {name!r}.") from None


def _stamp(path: Path) -> tuple[float, int]:
    try:
        stat = path.stat()
    except OSError:
        return (0.0, -1)  # gone or a broken link: reading it reports why
    return (stat.st_mtime, stat.st_size)


def _load(path: Path, stamp: tuple[float, int]) -> _File:
    """The file's runbook, or its problems: whatever is wrong with one file, the others still load."""
    try:
        source = read(path)
        return _File(stamp, parse(source, str(path), expected_name=path.stem), source)
    except RunbookInvalid as exc:
        problems = exc.problems
    except Exception as exc:
        log.exception("could not load %s", path)
        problems = [Problem(str(path), 1, f"cannot load the file ({type(exc).__name__}); check the file and the log")]
    for problem in problems:
        log.warning("%s", problem)
    return _File(stamp, None, "", problems)


async def record_version(engine: AsyncEngine, runbook: Runbook, source: str) -> Version:
    """The version row for this content, created (number = last + 1) the first time it is seen."""
    digest = content_hash(source)
    for _ in range(5):
        async with reading(engine) as conn:
            row = (
                await conn.execute(
                    select(t.versions.c.id, t.versions.c.version).where(
                        t.versions.c.runbook == runbook.name, t.versions.c.hash == digest
                    )
                )
            ).first()
        if row:
            return Version(row.id, runbook, row.version, digest, source)
        try:
            async with writing(engine) as conn:
                number = (
                    await conn.execute(
                        select(func.max(t.versions.c.version)).where(t.versions.c.runbook == runbook.name)
                    )
                ).scalar() or 0
                new_id = (
                    await conn.execute(
                        insert(t.versions)
                        .values(runbook=runbook.name, version=number + 1, hash=digest, source=source, file="")
                        .returning(t.versions.c.id)
                    )
                ).scalar_one()
                return Version(new_id, runbook, number + 1, digest, source)
        except IntegrityError:
            continue  # another process recorded it first: read theirs
    raise RuntimeError(f"could not record a version of {runbook.name}")


async def load_version(engine: AsyncEngine, version_id: int) -> Version:
    async with reading(engine) as conn:
        row = (await conn.execute(select(t.versions).where(t.versions.c.id == version_id))).mappings().first()
    if row is None:
        raise RunbookNotFound(f"Runbook version {version_id} does not exist.")
    return Version(row["id"], _parse_cached(row["source"], row["runbook"]), row["version"], row["hash"], row["source"])


@lru_cache(maxsize=256)
def _parse_cached(source: str, name: str) -> Runbook:
    return parse(source, f"{name}.yaml")


async def version_history(engine: AsyncEngine, name: str) -> list[dict[str, Any]]:
    """Every version of a runbook, newest first, each with a unified diff from the one before it; the
    source and the diff show secret values masked (redaction.masked_source), to everyone."""
    async with reading(engine) as conn:
        rows = (
            await conn.execute(
                select(t.versions.c.version, t.versions.c.hash, t.versions.c.source, t.versions.c.created_at)
                .where(t.versions.c.runbook == name)
                .order_by(t.versions.c.version)
            )
        ).all()
    if not rows:
        raise RunbookNotFound(f"No runbook is named {name!r}.")
    history: list[dict[str, Any]] = []
    previous: dict[str, Any] | None = None
    for row in rows:
        source = masked_source(row.source)
        diff = None
        if previous is not None:
            diff = "".join(
                difflib.unified_diff(
                    previous["source"].splitlines(keepends=True),
                    source.splitlines(keepends=True),
                    fromfile=f"{name} v{previous['version']}",
                    tofile=f"{name} v{row.version}",
                )
            )
        previous = {"version": row.version, "hash": row.hash, "created_at": iso(row.created_at), "source": source}
        history.append({**previous, "diff": diff})
    return list(reversed(history))
