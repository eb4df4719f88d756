"""ARCHITECTURE.md stays true: every module, package and file it names exists, and every Python module of
the three packages is named there (so a new module comes with its line in the document)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
DOC = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
PACKAGES = ("orchestrator", "worker", "web")


def named_paths() -> set[str]:
    """Paths in backticks, always from the repository's root: `orchestrator/jobs.py`, `worker/actions/`."""
    return set(re.findall(r"`((?:orchestrator|worker|web|tests|bench)/[\w./*-]*)`", DOC))


def test_every_file_is_named_from_the_root() -> None:
    bare = re.findall(r"`([\w-]+\.(?:py|js|html))`", DOC)
    assert bare == [], f"ARCHITECTURE.md names files without their folder: {bare}"


def test_every_path_the_document_names_exists() -> None:
    paths = named_paths()
    assert len(paths) > 60
    missing = sorted(p for p in paths if "*" not in p and not (ROOT / p).exists())
    assert missing == [], f"ARCHITECTURE.md names paths that do not exist: {missing}"


def test_every_module_is_in_the_document() -> None:
    paths = named_paths()
    modules = {
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if path.name != "__init__.py" and "migrations" not in path.parts
    }
    folders = {p for p in paths if p.endswith("/")}
    unnamed = sorted(m for m in modules if m not in paths and not any(m.startswith(f) for f in folders))
    assert unnamed == [], f"modules ARCHITECTURE.md does not mention: {unnamed}"
