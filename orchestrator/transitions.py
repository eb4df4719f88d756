"""Every move of a job's status, declared once, and the one compare-and-set that makes them.

A move names where it may come from and where it goes (the state table of orchestrator/states.py
bounds it too) and what happens when another writer moved the job first. `make` is the one function
that writes a job's status: `UPDATE ... WHERE id = ? AND status = ?` (and, for a run's moves,
`AND attempt = ?`: the attempt fence, which also guards a run's step rows and its committer's
batches), appending the move's `status` event in the same transaction. `make_all` makes the common
case of many runs' moves at once (the worker's committer: one statement for a batch's claims)."""

from __future__ import annotations

import functools
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BindParameter, ColumnElement, TextClause, Update, bindparam, select, text, update
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.db import driver
from orchestrator.db import tables as t
from orchestrator.db.tables import utcnow
from orchestrator.errors import InvalidTransition, JobNotFound
from orchestrator.events import Pending, status_event
from orchestrator.states import JobStatus, StepStatus, allowed_actions, can_move


class Lost(StrEnum):
    """What a move does when the job is not where it may come from: another writer moved it first
    (a person cancelled, a decision came in), or a newer attempt fenced this one out."""

    REFUSE = "refuse"  # InvalidTransition: 409 to a person; a run's writes stop (its fence breaks)
    YIELD = "yield"  # the other writer's move stands: nothing is written, `make` returns None
    KEEP = "keep"  # the other writer's status stands; the move's `keeps` columns are written even so


@dataclass(frozen=True)
class Move:
    name: str
    sources: frozenset[JobStatus]
    targets: frozenset[JobStatus]
    lost: Lost = Lost.REFUSE
    #: (from, through): a job in `from` passes through `through` first, with an event for each step.
    via: tuple[JobStatus, JobStatus] | None = None
    #: Lost.KEEP: the columns written even so (cancel_leftovers ends the steps still to run).
    keeps: tuple[str, ...] = ()
    #: Bounded by the state table too. A mirror is not: it copies what another tool reports.
    checked: bool = True


@dataclass(frozen=True)
class Moved:
    previous: JobStatus
    status: JobStatus  # where the job is now (Lost.KEEP: where the other writer put it)
    won: bool = True


S = JobStatus
EVERY = frozenset(JobStatus)
ACTIVE = frozenset(s for s in JobStatus if not s.finished)

#: A run claims its job: queued (or scheduled, whose time has come) to running, for its attempt.
CLAIM = Move("claim", frozenset({S.QUEUED}), frozenset({S.RUNNING}), via=(S.SCHEDULED, S.QUEUED))
#: A run ends its job. When a person ended it first (cancel, reject) their status and error stand,
#: and the run's metrics and outputs are still recorded; a newer attempt writes its own.
FINISH = Move(
    "finish",
    frozenset({S.RUNNING}),
    frozenset({S.COMPLETED, S.FAILED}),
    lost=Lost.KEEP,
    keeps=("metrics", "outputs", "duration_s", "finished_at"),
)
#: A run stops at an approval step, on the same page.
ASK = Move("ask approval", frozenset({S.RUNNING}), frozenset({S.WAITING_FOR_APPROVAL}))
#: A run stops at a handoff step for a person to act in its live browser (the job shows as paused).
HAND_OFF = Move("hand off", frozenset({S.RUNNING}), frozenset({S.PAUSED}))
#: The handoff's `until` held, or its time ran out: the run goes on (to fail the step, on a timeout).
#: A person who resumed or cancelled in the same instant stands.
HANDOFF_DONE = Move("handoff done", frozenset({S.PAUSED}), frozenset({S.RUNNING}), lost=Lost.YIELD)
#: Nobody decided in time: the step's on_timeout decides (the asking run, or the sweep when it is
#: gone). A person who decided in the same instant stands.
TIME_OUT = Move("time out", frozenset({S.WAITING_FOR_APPROVAL}), frozenset({S.RUNNING, S.FAILED}), lost=Lost.YIELD)
#: What a person asks (jobs.act, through `move`): any move the state table allows, from the statuses
#: the caller expects (states.ACTIONS' from for the action, narrowed to the status the person saw).
ACT = Move("act", ACTIVE, EVERY)
#: The reaper takes over a running job whose worker was lost: the next attempt queued, or failed
#: after too many. A job that moved meanwhile was someone else's to move.
REAP = Move("reap", frozenset({S.RUNNING}), frozenset({S.QUEUED, S.FAILED}), lost=Lost.YIELD)
#: A stopping worker hands its running job back, queued as the next attempt.
HAND_BACK = Move("hand back", frozenset({S.RUNNING}), frozenset({S.QUEUED}), lost=Lost.YIELD)
#: A run reported by another tool (orchestrator/ingest.py) goes where that tool says, from where it
#: was read in the same transaction.
MIRROR = Move("mirror", EVERY, EVERY, checked=False)

MOVES = (CLAIM, FINISH, ASK, HAND_OFF, HANDOFF_DONE, TIME_OUT, ACT, REAP, HAND_BACK, MIRROR)


def make_sync(
    conn: Connection,
    move: Move,
    job_id: str,
    to: JobStatus | None = None,
    *,
    expected: Collection[JobStatus] | None = None,
    attempt: int | None = None,
    values: dict[str, Any] | None = None,
    events: list[Pending] | None = None,
) -> Moved | None:
    """Make `move` to `to` (its only target when None) inside the caller's write transaction, from
    the statuses it may come from (narrowed to `expected`), for `attempt` when given; append its
    event to `events`. When the job is elsewhere, what the move declares for a lost race happens.
    Raises JobNotFound when there is no such job."""
    if to is None:
        (to,) = move.targets  # a move with one target
    if to not in move.targets:
        raise ValueError(f"The {move.name} move never goes to {to.value}.")
    sources = move.sources if expected is None else move.sources & frozenset(expected)
    values = values or {}
    now = utcnow()
    # The common case first: one compare-and-set from the only status the move may come from.
    if len(sources) == 1:
        (current,) = sources
        if _may(move, current, to) and _set(conn, job_id, current, to, now, values, attempt):
            return _moved(events, job_id, current, to, now)
    row = conn.execute(SELECT_STATUS, {"b_id": job_id}).first()
    if row is None:
        raise JobNotFound(f"No job has the id {job_id}.")
    current = JobStatus(row.status)
    if move.via is not None and current is move.via[0] and _set(conn, job_id, current, move.via[1], now, {}, attempt):
        _moved(events, job_id, current, move.via[1], now)
        current = move.via[1]
    if current not in sources or not _may(move, current, to):
        return _lost(conn, move, job_id, current, to, row.attempt, attempt, values)
    if not _set(conn, job_id, current, to, now, values, attempt):
        return _lost(conn, move, job_id, current, to, row.attempt, attempt, values, "it changed meanwhile")
    return _moved(events, job_id, current, to, now)


async def make(
    conn: AsyncConnection, move: Move, job_id: str, to: JobStatus | None = None, **kwargs: Any
) -> Moved | None:
    """make_sync on an async connection (one implementation for the web's and the worker's writes)."""
    return await conn.run_sync(lambda sync: make_sync(sync, move, job_id, to, **kwargs))


async def move(
    conn: AsyncConnection,
    job_id: str,
    to: JobStatus,
    *,
    expected: Collection[JobStatus] | None = None,
    values: dict[str, Any] | None = None,
    events: list[Pending] | None = None,
) -> JobStatus:
    """The `act` move; returns the previous status. Raises InvalidTransition when the job is elsewhere."""
    moved = await make(conn, ACT, job_id, to, expected=expected, values=values, events=events)
    assert moved is not None  # ACT refuses a lost race
    return moved.previous


@dataclass(frozen=True)
class Planned:
    """A run's move of its job, made together with other runs' (make_all)."""

    move: Move
    job_id: str
    to: JobStatus
    attempt: int | None
    values: dict[str, Any]


def make_all(conn: Connection, planned: Sequence[Planned], events: Sequence[list[Pending]]) -> list[bool]:
    """make_sync's common case for many jobs at once: each job is where its move comes from (the
    move's only source), and one compare-and-set moves it. On PostgreSQL the compare-and-sets of
    the same columns are one statement (one round trip, where make_sync makes one a job). True
    where the job moved (its `status` event appended to its list in `events`); False where nothing
    was written for it: make_sync then decides, as for one job (a lost race, a way through `via`).
    Each job appears at most once."""
    if len({p.job_id for p in planned}) != len(planned):
        raise ValueError("make_all moves each job at most once")
    now = utcnow()
    moved = [False] * len(planned)
    groups: dict[tuple[JobStatus, tuple[str, ...], bool], list[int]] = {}
    for i, p in enumerate(planned):
        if len(p.move.sources) != 1 or p.to not in p.move.targets:
            continue
        (current,) = p.move.sources
        if _may(p.move, current, p.to):
            groups.setdefault((current, tuple(sorted(p.values)), p.attempt is not None), []).append(i)
    for (current, keys, fenced), members in groups.items():
        if conn.dialect.name == "postgresql" and len(members) > 1:
            rows = [(planned[i].job_id, planned[i].to, planned[i].attempt, planned[i].values) for i in members]
            won = _set_all(conn, current, keys, fenced, rows, now)
            done = [i for i in members if planned[i].job_id in won]
        else:
            done = [i for i in members if _set(conn, *_args(planned[i], current, now))]
        for i in done:
            moved[i] = True
            _moved(events[i], planned[i].job_id, current, planned[i].to, now)
    return moved


def _args(p: Planned, current: JobStatus, now: datetime) -> tuple[Any, ...]:
    return p.job_id, current, p.to, now, p.values, p.attempt


def _may(move: Move, current: JobStatus, to: JobStatus) -> bool:
    return not move.checked or can_move(current, to)


def _moved(events: list[Pending] | None, job_id: str, current: JobStatus, to: JobStatus, now: Any) -> Moved:
    if events is not None:
        events.append(status_event(job_id, to.value, current.value, now))
    return Moved(current, to)


def _lost(
    conn: Connection,
    move: Move,
    job_id: str,
    current: JobStatus,
    to: JobStatus,
    held: int,
    attempt: int | None,
    values: dict[str, Any],
    why: str = "",
) -> Moved | None:
    """The job is not where `move` may come from (`current`, of attempt `held`): what the move declares."""
    if move.lost is Lost.REFUSE:
        raise _refused(job_id, current, to, why)
    if move.lost is Lost.YIELD or (attempt is not None and held != attempt):
        return None  # the other writer's move stands (a newer attempt writes its own)
    cancel_leftovers(conn, job_id)
    conn.execute(update(t.jobs).where(t.jobs.c.id == job_id).values({k: values[k] for k in move.keeps}))
    return Moved(current, current, won=False)


# -- the one compare-and-set, and the attempt fence -----------------------------------------------

SELECT_STATUS = select(t.jobs.c.status, t.jobs.c.attempt).where(t.jobs.c.id == bindparam("b_id"))


def fence(attempt: BindParameter[Any]) -> ColumnElement[bool]:
    """The attempt fence: the job's attempt is still the writer's (a stale attempt, whose job
    resumed elsewhere, writes nothing)."""
    return t.jobs.c.attempt == attempt


def stale_runs(conn: Connection, attempts: dict[str, int]) -> set[str]:
    """Of these runs (job id -> attempt), those whose job has moved on to a newer attempt (one query)."""
    rows = conn.execute(select(t.jobs.c.id, t.jobs.c.attempt).where(t.jobs.c.id.in_(list(attempts)))).all()
    return {row.id for row in rows if row.attempt > attempts[row.id]}


@functools.cache
def _update(keys: tuple[str, ...], fenced: bool) -> Update:
    """The compare-and-set for one set of columns, built once (building statements costs more than
    running them)."""
    where = [t.jobs.c.id == bindparam("b_id"), t.jobs.c.status == bindparam("b_from")]
    if fenced:
        where.append(fence(bindparam("b_attempt")))
    return update(t.jobs).where(*where).values({k: bindparam(k) for k in ("status", "updated_at", *keys)})


def _set(
    conn: Connection,
    job_id: str,
    current: JobStatus,
    to: JobStatus,
    now: Any,
    values: dict[str, Any],
    attempt: int | None,
) -> bool:
    params = {"b_id": job_id, "b_from": current.value, "status": to.value, "updated_at": now, **values}
    if attempt is not None:
        params["b_attempt"] = attempt
    return driver.execute(conn, _update(tuple(sorted(values)), attempt is not None), params) == 1


def _set_all(
    conn: Connection,
    current: JobStatus,
    keys: tuple[str, ...],
    fenced: bool,
    rows: list[tuple[str, JobStatus, int | None, dict[str, Any]]],
    now: datetime,
) -> set[str]:
    """`_set` for many jobs in one PostgreSQL statement; the ids of the jobs that moved."""
    statement, convert = _update_all(conn.dialect, keys, fenced)
    records = []
    for job_id, to, attempt, values in rows:
        record = {"b_id": job_id, "b_attempt": attempt, "status": to.value, "updated_at": now}
        for key, process in convert:
            record[key] = values[key] if process is None else process(values[key])
        records.append(record)
    data = json.dumps(records, default=_json_value)
    return {row[0] for row in conn.execute(statement, {"b_rows": data, "b_from": current.value})}


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):  # naive means UTC, as the driver takes it
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    raise TypeError(f"a job's column cannot hold {type(value).__name__}")


@functools.cache
def _update_all(dialect: Dialect, keys: tuple[str, ...], fenced: bool) -> tuple[TextClause, list[tuple[str, Any]]]:
    """The compare-and-set of `_update` for many jobs: their values arrive as one JSON array of
    records. JSON columns travel as the text their bind processor makes (so a None is stored
    as SQLAlchemy stores it), the others as JSON values in the column's own SQL type."""
    columns = ("status", "updated_at", *keys)
    fields, assign, convert = ["b_id VARCHAR", "b_attempt INTEGER"], [], []
    for name in columns:
        column_type = t.jobs.c[name].type
        if isinstance(column_type, JSON):
            fields.append(f"{name} TEXT")
            assign.append(f"{name} = CAST(v.{name} AS JSON)")
            convert.append((name, column_type.dialect_impl(dialect).bind_processor(dialect)))
        else:
            fields.append(f"{name} {column_type.compile(dialect=dialect)}")
            assign.append(f"{name} = v.{name}")
            if name in keys:
                convert.append((name, None))
    where = "jobs.id = v.b_id AND jobs.status = CAST(:b_from AS VARCHAR)"
    if fenced:
        where += " AND jobs.attempt = v.b_attempt"
    sql = (
        f"UPDATE {t.jobs.name} AS jobs SET {', '.join(assign)} "
        f"FROM json_to_recordset(CAST(:b_rows AS JSON)) AS v({', '.join(fields)}) WHERE {where} RETURNING jobs.id"
    )
    return text(sql), convert


def _refused(job_id: str, current: JobStatus, to: JobStatus, why: str = "") -> InvalidTransition:
    allowed = [a.value for a in allowed_actions(current)]
    reason = f" ({why})" if why else ""
    return InvalidTransition(
        f"Job {job_id} is {current.value} and cannot become {to.value}{reason}.",
        status=current.value,
        allowed_actions=allowed,
    )


def cancel_leftovers(conn: Connection, job_id: str) -> None:
    """A job that ended before its run did: the steps that were still to run, or running, are cancelled."""
    conn.execute(
        update(t.steps)
        .where(t.steps.c.job_id == job_id, t.steps.c.status.in_((StepStatus.PENDING.value, StepStatus.RUNNING.value)))
        .values(status=StepStatus.CANCELLED.value)
    )
