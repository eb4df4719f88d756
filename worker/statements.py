"""The prepared statements a run writes through the committer: built once, each run as one
executemany per batch (worker/committer.py), and found by their key in the writer process."""

from __future__ import annotations

from sqlalchemy import bindparam, insert, select, update

from orchestrator.db import tables as t
from orchestrator.transitions import fence
from worker.committer import prepared

STEP_FIELDS = (
    "status",
    "started_at",
    "finished_at",
    "duration_s",
    "retries",
    "attempt",
    "captured",
    "error",
    "diagnostics",
)

UPDATE_STEP = prepared(
    f"{__name__}.UPDATE_STEP",
    update(t.steps)
    .where(
        t.steps.c.job_id == bindparam("b_job"),
        t.steps.c.step_id == bindparam("b_step"),
        # fenced: a stale attempt (its job resumed elsewhere) changes nothing
        t.steps.c.job_id.in_(select(t.jobs.c.id).where(t.jobs.c.id == bindparam("b_job"), fence(bindparam("attempt")))),
    )
    .values({name: bindparam(name) for name in STEP_FIELDS}),
)
INSERT_ARTIFACT = prepared(f"{__name__}.INSERT_ARTIFACT", insert(t.artifacts))
UPDATE_CHECKPOINT = prepared(
    f"{__name__}.UPDATE_CHECKPOINT",
    update(t.jobs).where(t.jobs.c.id == bindparam("b_job")).values(checkpoint=bindparam("checkpoint")),
)
INSERT_RECORD = prepared(f"{__name__}.INSERT_RECORD", insert(t.records))
UPDATE_COUNTS = prepared(
    f"{__name__}.UPDATE_COUNTS",
    update(t.jobs).where(t.jobs.c.id == bindparam("b_job")).values(record_counts=bindparam("record_counts")),
)
