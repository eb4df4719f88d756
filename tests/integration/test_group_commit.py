"""The worker's group commit on SQLite and on the machine's PostgreSQL: the runs' claims and ends made
together in one transaction write what each would write alone, a job a person moved meanwhile keeps
the person's status, and event ids become visible in order while two workers write at once."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from orchestrator import events, jobs
from orchestrator.db import tables as t
from orchestrator.db.engine import reading
from orchestrator.db.tables import utcnow
from orchestrator.states import Action, JobStatus
from tests.integration.conftest import Env
from worker.committer import Committer, Fence, Write
from worker.ops import Claim, Finish

RUNBOOK = """
name: tiny
steps:
  - {id: one, action: set, values: {a: 1}}
"""

#: Commits of each of the two committers in the event-order test (without PostgreSQL's lock on event
#: inserts, a reader missed an id in most runs of it).
ROUNDS = 150


def finish(job_id: str, outputs: Any) -> Finish:
    """The end a run of RUNBOOK writes (worker/tally.py), with these outputs."""
    values = {
        "record_counts": {"total": 0},
        "finished_at": utcnow(),
        "duration_s": 0.25,
        "metrics": {"steps_succeeded": 1, "steps_failed": 0},
        "outputs": outputs,
        "summary": "All 1 steps succeeded.",
        "warnings": False,
        "error_message": None,
        "error_step_id": None,
    }
    report = {"job_id": job_id, "status": "completed", "summary": "All 1 steps succeeded."}
    return Finish(job_id, 1, JobStatus.COMPLETED, values, report)


async def statuses(env: Env, job_id: str) -> list[tuple[str, str]]:
    async with reading(env.svc.engine) as conn:
        found = await events.read_after(conn, 0, job_id, types=["status", "report"])
    return [(e.type, e.data["status"]) for e in found]


async def test_claims_and_ends_made_together_write_what_each_writes_alone(any_db_env: Env) -> None:
    env = any_db_env
    env.write(RUNBOOK)
    ids = [(await env.create("tiny"))["id"] for _ in range(7)]
    refused, moved_on, alone, *together = ids
    await jobs.act(env.svc, refused, Action.CANCEL, "grace", "before its claim")
    committer = Committer(env.svc.engine, env.svc.redis)
    await committer.start()
    try:
        fences = {job_id: Fence(1) for job_id in ids}
        claims = [committer.submit(Write(j, [Claim(j, 1, "robot", None)], fence=fences[j])) for j in ids[1:]]
        assert await asyncio.gather(*claims) == [None] * 6
        assert committer.commits == 1  # one transaction for them all
        # cancelled before its claim: the claim is refused, and the run's fence stops its writes
        await committer.submit(Write(refused, [Claim(refused, 1, "robot", None)], fence=fences[refused]))
        assert fences[refused].broken
        await jobs.act(env.svc, moved_on, Action.CANCEL, "grace", "while it ran")
        ends = [committer.submit(Write(alone, [finish(alone, None)], fence=fences[alone]))]
        await ends[0]  # a batch of its own
        ends += [
            committer.submit(Write(j, [finish(j, {"n": i} if i > 1 else None)], fence=fences[j]))
            for i, j in enumerate([moved_on, *together])
        ]
        assert await asyncio.gather(*ends) == [
            "completed",
            "cancelled",
            "completed",
            "completed",
            "completed",
            "completed",
        ]
    finally:
        await committer.stop()
    assert await statuses(env, refused) == [("status", "queued"), ("status", "cancelled")]
    assert await statuses(env, moved_on) == [
        ("status", "queued"),
        ("status", "running"),
        ("status", "cancelled"),
        ("report", "cancelled"),  # the person's status stands; the run's metrics are kept
    ]
    for job_id in (alone, *together):
        assert await statuses(env, job_id) == [
            ("status", "queued"),
            ("status", "running"),
            ("status", "completed"),
            ("report", "completed"),
        ]
    kept = (await jobs.get(env.svc, moved_on))["metrics"]
    assert kept is not None and kept["steps_succeeded"] == 1
    # the rows the batch wrote read as the one written alone, down to a JSON null
    c = t.jobs.c
    columns = (c.status, c.robot, c.attempt, c.duration_s, c.summary, c.warnings, c.error_message, c.metrics)
    query = select(c.id, *columns, c.record_counts, c.outputs, c.outputs.is_(None).label("no_outputs"))
    async with reading(env.svc.engine) as conn:
        rows = {row.id: dict(row._mapping) for row in await conn.execute(query)}
    expected = {k: v for k, v in rows[alone].items() if k != "id"}
    assert expected["robot"] == "robot" and expected["outputs"] is None and expected["duration_s"] == 0.25
    assert {k: v for k, v in rows[together[0]].items() if k != "id"} == expected
    for i, job_id in enumerate(together[1:], start=2):
        assert {k: v for k, v in rows[job_id].items() if k != "id"} == {
            **expected,
            "outputs": {"n": i},
            "no_outputs": False,
        }


async def test_a_reader_never_finds_an_earlier_event_id_committed_later(any_db_env: Env) -> None:
    """Two committers (two workers' writers) append events at once while a reader follows the
    table as a stream does (the ids after the last it saw): it misses none."""
    env = any_db_env
    env.write(RUNBOOK)
    job_ids = [(await env.create("tiny"))["id"] for _ in range(2)]
    async with reading(env.svc.engine) as conn:
        start = await events.last_id(conn)
    seen: list[int] = []
    writing = True

    async def follow() -> None:
        while writing or not seen or seen[-1] < await last():
            async with reading(env.svc.engine) as conn:
                found = await events.read_after(conn, seen[-1] if seen else start, limit=1000)
            seen.extend(e.id for e in found)
            await asyncio.sleep(0)

    async def last() -> int:
        async with reading(env.svc.engine) as conn:
            return await events.last_id(conn)

    async def append(committer: Committer, job_id: str) -> None:
        for n in range(ROUNDS):
            note = events.Pending(job_id, "log", {"job_id": job_id, "level": "info", "message": f"line {n}"})
            await committer.submit(Write(job_id, [], [note, note]))

    committers = [Committer(env.svc.engine, env.svc.redis) for _ in job_ids]
    for committer in committers:
        await committer.start()
    reader = asyncio.create_task(follow())
    try:
        await asyncio.gather(*(append(c, j) for c, j in zip(committers, job_ids, strict=True)))
    finally:
        writing = False
        for committer in committers:
            await committer.stop()
    async with asyncio.timeout(60):
        await reader
    async with reading(env.svc.engine) as conn:
        stored = list((await conn.execute(select(t.events.c.id).where(t.events.c.id > start))).scalars())
    assert len(stored) == 2 * 2 * ROUNDS
    assert seen == sorted(stored)  # every id, once, in order: none committed behind the reader
