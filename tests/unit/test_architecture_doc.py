"""ARCHITECTURE.md stays true: every module, package and file it names exists, and every Python module of
the three packages is named there (so a new module comes with its line in the document)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
DOC = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
PACKAGES = ("orchestrator", "worker", "web")


def named_paths() -> set[str]:
    """Paths in backticks: `orchestrator/jobs.py`; in a package's table `jobs.py`, or `db/` and then the
    modules of that folder in the same row."""
    found: set[str] = set()
    package = ""
    for line in DOC.splitlines():
        heading = re.match(r"### (\w+)/", line)
        if heading:
            package = heading.group(1)
        folder = ""
        for name in re.findall(r"`([\w./*-]+\.(?:py|html|js|md|toml)|[\w/]+/)`", line):
            if name.split("/")[0] in (*PACKAGES, "tests", "bench"):
                found.add(name)
            elif package and line.startswith("|"):
                found.add(f"{package}/{folder}{name}")
                if name.endswith("/") and not folder:
                    folder = name
    return found


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
