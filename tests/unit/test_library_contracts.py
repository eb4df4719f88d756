"""Where the code overrides or calls a library's private internals, the version it was checked against is
pinned in pyproject.toml, and this test fails loudly when an upgrade changes one of those internals.

On a failure: read the library's new code for the named method, check the override (the module named in
the message) still keeps the library's rules, then record the new fingerprint here."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from arq.worker import Worker
from sqlalchemy import JSON, Column, DateTime, Integer, MetaData, String, Table, create_engine, insert, select
from sse_starlette import EventSourceResponse

from orchestrator.db import driver

#: arq 0.28.0's Worker: the methods worker/ overrides (its subclass of Worker) and the private ones it
#: calls as they are (`_poll_iteration`, `_release_sem_dec_counter_on_complete`).
ARQ = {
    "__init__": "edfb0cd7e05e77cf",
    "main": "45ca1591c9717466",
    "start_jobs": "b45797cfa40bed7f",
    "run_job": "589a19059ff84ee7",
    "handle_sig": "985ff7ba01aa8f04",
    "finish_job": "903f09c92830d3fd",
    "_release_sem_dec_counter_on_complete": "0ed101482e942c33",
    "_poll_iteration": "f8d39d823a0a59f2",
}
#: sse-starlette 3.7.0's EventSourceResponse: web/sse.py overrides `_send_with_timeout`.
SSE = {"_send_with_timeout": "423dc62c03f8c971"}


def fingerprint(method: Callable[..., Any]) -> str:
    return hashlib.sha256(inspect.getsource(method).encode()).hexdigest()[:16]


def changed(cls: type, expected: dict[str, str]) -> dict[str, str]:
    return {
        name: fingerprint(getattr(cls, name))
        for name, want in expected.items()
        if fingerprint(getattr(cls, name)) != want
    }


def pinned(package: str) -> str:
    """The version pyproject.toml pins `package` to (`package==X`)."""
    text = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    [line] = [line for line in text.splitlines() if line.strip().lower().startswith(f'"{package.lower()}==')]
    return line.split("==", 1)[1].split('"', 1)[0]


@pytest.mark.parametrize("package", ["arq", "sse-starlette", "SQLAlchemy"])
def test_the_libraries_whose_internals_are_used_are_pinned_to_the_checked_version(package: str) -> None:
    assert version(package) == pinned(package), f"{package} is not the version its internals were checked at"


def test_arq_worker_internals_are_the_ones_the_worker_overrides() -> None:
    from worker.main import OrchestratorWorker

    overridden = {name for name in vars(OrchestratorWorker) if hasattr(Worker, name) and not name.startswith("__doc")}
    overridden.discard("__module__")
    assert overridden <= set(ARQ), (
        f"the worker overrides arq internals this test does not check: {overridden - set(ARQ)}"
    )
    assert changed(Worker, ARQ) == {}, "arq changed Worker methods the worker overrides or calls: re-check worker/"


def test_sse_starlette_still_sends_through_the_method_web_sse_overrides() -> None:
    source = inspect.getsource(EventSourceResponse)
    assert source.count("self._send_with_timeout(") >= 3, "sse-starlette no longer sends through _send_with_timeout"
    assert changed(EventSourceResponse, SSE) == {}, "sse-starlette changed _send_with_timeout: re-check web/sse.py"


def test_the_driver_writes_the_rows_sqlalchemy_writes(tmp_path: Path) -> None:
    """orchestrator/db/driver.py compiles a statement with SQLAlchemy's compiler internals (positiontup, binds,
    prefetch) and runs it on the SQLite driver: the rows must equal those `conn.execute` writes."""
    meta = MetaData()
    table = Table(
        "contract",
        meta,
        Column("id", Integer, primary_key=True),
        Column("name", String(50), nullable=False),
        Column("data", JSON, nullable=True),
        Column("at", DateTime(timezone=True)),
        Column("kind", String(10), nullable=False, default="plain"),
    )
    engine = create_engine(f"sqlite:///{tmp_path / 'contract.db'}")
    meta.create_all(engine)
    statement = insert(table)
    rows = [
        {"id": 1, "name": "Ünïcode ✓", "data": {"a": [1, None, {"b": "c"}]}, "at": datetime(2026, 1, 2, tzinfo=UTC)},
        {"id": 2, "name": "", "data": None, "at": None},
    ]
    try:
        with engine.begin() as conn:
            driver.executemany(conn, statement, rows)
            assert driver.execute(conn, statement, {**rows[0], "id": 3}) == 1
            conn.execute(statement, [{**row, "id": row["id"] + 10} for row in rows])
        with engine.connect() as conn:
            found = {row.id: row._asdict() for row in conn.execute(select(table))}
        for by_driver, by_sqlalchemy in ((1, 11), (2, 12), (3, 11)):
            assert {**found[by_driver], "id": 0} == {**found[by_sqlalchemy], "id": 0}
        assert found[1]["kind"] == "plain"  # a column default SQLAlchemy computes: the driver left it to SQLAlchemy
    finally:
        engine.dispose()
