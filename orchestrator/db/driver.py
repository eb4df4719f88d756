"""Hot statements run straight on the SQLite driver.

Writes: each value converted by SQLAlchemy's own bind processor: the same rows as
`conn.execute(statement, params)` writes, without its per-call work
(compile-cache lookup, parameter construction, result set-up), which cost more than SQLite itself
on the worker's writer (bench/: a job of three steps makes about ten such writes).

Inside the caller's transaction: the statement runs on the connection SQLAlchemy already began.
Other drivers (PostgreSQL) go through `conn.execute`.

Reads: DriverRead, each column converted by SQLAlchemy's own result processor, on SQLite and on
asyncpg (DRIVER_READS).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Executable, Select
from sqlalchemy.engine import Connection, Dialect

_compiled: dict[tuple[int, tuple[str, ...], str], _DriverStatement] = {}
#: The drivers DriverRead runs on.
DRIVER_READS = frozenset({"pysqlite", "asyncpg"})


class _DriverStatement:
    def __init__(self, statement: Any, keys: tuple[str, ...], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(keys) or None)
        self.sql = str(compiled)
        self.names = list(compiled.positiontup or ())
        binds = compiled.binds
        self.fixed = {name: binds[name].effective_value for name in self.names if binds[name].value is not None}
        self.process = [binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in self.names]
        #: Values SQLAlchemy would compute itself (column defaults, onupdate): then it runs the statement.
        self.complete = (
            all(name in keys or name in self.fixed for name in self.names)
            if keys
            else not (set(compiled.insert_prefetch or ()) | set(compiled.update_prefetch or ()) or compiled.postfetch)
        )

    def row(self, params: dict[str, Any]) -> tuple[Any, ...]:
        values = []
        for name, process in zip(self.names, self.process, strict=True):
            value = params[name] if name in params else self.fixed[name]
            values.append(process(value) if process is not None and value is not None else value)
        return tuple(values)


def _prepare(conn: Connection, statement: Executable, keys: tuple[str, ...]) -> _DriverStatement | None:
    """The compiled statement, or None where SQLAlchemy must run it (not SQLite, or it computes values)."""
    if conn.dialect.driver != "pysqlite":
        return None
    key = (id(statement), keys, conn.dialect.name)
    found = _compiled.get(key)
    if found is None:
        found = _compiled[key] = _DriverStatement(statement, keys, conn.dialect)
    return found if found.complete else None


def _is_insert(statement: Executable) -> bool:
    return getattr(statement, "is_insert", False) and not getattr(statement, "_values", None)


def execute(conn: Connection, statement: Executable, params: dict[str, Any]) -> int:
    """Run one statement built once and kept (its identity is the cache key); return the rowcount."""
    prepared = _prepare(conn, statement, tuple(params) if _is_insert(statement) else ())
    if prepared is None:
        return conn.execute(statement, params).rowcount
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(prepared.sql, prepared.row(params))
        return int(cursor.rowcount)
    finally:
        cursor.close()


def executemany(conn: Connection, statement: Executable, param_sets: Sequence[dict[str, Any]]) -> None:
    """One statement built once and kept, for many parameter sets (an insert's sets have one set of keys)."""
    if not param_sets:
        return
    keys = tuple(param_sets[0]) if _is_insert(statement) else ()
    prepared = None if keys and any(tuple(p) != keys for p in param_sets) else _prepare(conn, statement, keys)
    if prepared is None:
        conn.execute(statement, list(param_sets))
        return
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(prepared.sql, [prepared.row(params) for params in param_sets])
    finally:
        cursor.close()


class DriverRead:
    """A SELECT run straight on the driver (SQLite's, or SQLAlchemy's adapter of asyncpg), each column
    converted by SQLAlchemy's own result processor: the same values as `conn.execute(statement)`
    gives, for a fraction of the Python work (a job row on SQLite: 14 us against 118 us; on
    PostgreSQL, 100 us against 140 us with the round trip). The claim of every job reads one."""

    def __init__(self, statement: Select[Any], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self._sql = str(compiled)
        self._params = list(compiled.positiontup or ())
        self._columns = list(statement.selected_columns)
        self._names = [column.name for column in self._columns]
        self._dialect = dialect
        #: Made at the first read: a processor may depend on the type the driver reports.
        self._convert: list[tuple[int, Any]] | None = None

    def first(self, conn: Connection, **params: Any) -> dict[str, Any] | None:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(self._sql, [params[name] for name in self._params])
            found = cursor.fetchone()
            if self._convert is None:
                self._convert = self._processors([entry[1] for entry in cursor.description])
        finally:
            cursor.close()  # resets the statement, ending its read transaction
        if found is None:
            return None
        values = list(found)
        for i, process in self._convert:
            values[i] = process(values[i])
        return dict(zip(self._names, values, strict=True))

    def _processors(self, types: list[Any]) -> list[tuple[int, Any]]:
        dialect = self._dialect
        return [
            (i, process)
            for i, (column, reported) in enumerate(zip(self._columns, types, strict=True))
            if (process := column.type.dialect_impl(dialect).result_processor(dialect, reported)) is not None
        ]
