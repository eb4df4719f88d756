"""Re-runs: a new job with the same inputs (secrets included) and the same locked runbook version, of
every record or of the failed ones, from the start or from a step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from orchestrator.db import tables as t
from orchestrator.db.engine import reading
from orchestrator.db.tables import utcnow
from orchestrator.errors import InvalidInput, InvalidTransition, JobNotFound
from orchestrator.intake import count_job, enqueue_job, insert_job, new_id
from orchestrator.listing import get
from orchestrator.runbooks.catalog import load_version
from orchestrator.runbooks.schema import Runbook
from orchestrator.runbooks.steps import StepBase
from orchestrator.services import Services
from orchestrator.states import JobStatus, StepStatus


async def rerun(
    svc: Services,
    job_id: str,
    actor: str,
    records: str | None = None,
    from_step: str | None = None,
    human: str | None = None,
) -> dict[str, Any]:
    """A new job with the same inputs (secrets included) and the same locked runbook version;
    `records="failed"` runs its loop over only the records that failed, and `from_step` starts at
    that step with the values captured before it (and the page it was on, where that is known)."""
    if records not in (None, "failed"):
        raise InvalidInput({"records": "must be failed"})
    async with reading(svc.engine) as conn:
        old = (await conn.execute(select(t.jobs).where(t.jobs.c.id == job_id))).mappings().first()
        if old is None:
            raise JobNotFound(f"No job has the id {job_id}.")
        if old["version_id"] is None:
            raise InvalidTransition(
                f"Job {job_id} was reported by {old['source']}, not run here: it cannot be re-run here.",
                status=old["status"],
            )
        steps = (
            (await conn.execute(select(t.steps).where(t.steps.c.job_id == job_id).order_by(t.steps.c.position)))
            .mappings()
            .all()
        )
        failed = (
            (
                await conn.execute(
                    select(t.records.c.record_id).where(t.records.c.job_id == job_id, t.records.c.status == "failed")
                )
            )
            .scalars()
            .all()
        )
    # what an earlier re-run asked for is not asked again
    data = {k: v for k, v in old["data"].items() if k not in ("from_step", "only_records")} | {"rerun_of": job_id}
    if records == "failed":
        if not failed:
            raise InvalidTransition(f"Job {job_id} has no failed records to run again.", status=old["status"])
        data["only_records"] = list(failed)
    version = await load_version(svc.engine, old["version_id"])
    carried, checkpoint = _carried(steps, from_step, old["checkpoint"], version.runbook) if from_step else ({}, None)
    if from_step:
        data["from_step"] = from_step
    await count_job(svc, human, actor, "rerun")  # a re-run it will make, not a refused one
    new_job, now = new_id(), utcnow()
    row = {
        k: old[k]
        for k in (
            "runbook",
            "version_id",
            "runbook_version",
            "priority",
            "inputs",
            "secret_inputs",
            "tags",
            "parent_id",
            "video",
        )
    }
    attachments = await _copy_files(svc, job_id, new_job, version.runbook.inputs, row)
    row.update(
        id=new_job,
        status=JobStatus.QUEUED.value,
        source="rerun",
        created_by=actor,
        owner=human or actor,  # who re-runs it owns the re-run (and may not approve it, if so set)
        created_at=now,
        updated_at=now,
        metrics={},
        record_counts={},
        data=data,
        checkpoint=checkpoint,
        inputs_hash=old["inputs_hash"],
    )
    try:
        await insert_job(
            svc, row, [(st["step_id"], st["name"], st["action"]) for st in steps], attachments, carried=carried
        )
    except BaseException:
        if attachments:
            await svc.store.delete_job(new_job)
        raise
    await enqueue_job(svc, row, version.runbook.settings.concurrency)
    return await get(svc, new_job)


def _asks_people(step: StepBase | None) -> bool:
    """Whether running the step may ask for an approval: an approval, a child job (its runbook may
    ask), or a loop with either inside."""
    if step is None:
        return False
    if step.action in ("approval", "run_runbook"):
        return True
    return any(_asks_people(nested) for nested in getattr(step, "steps", None) or ())


async def _copy_files(
    svc: Services, old_job: str, new_job: str, specs: dict[str, Any], row: dict[str, Any]
) -> list[dict[str, Any]]:
    """A re-run gets its own copies of the file inputs (so its upload steps find them, and deleting
    the old job leaves it whole); `row["inputs"]` then refers to the copies."""
    inputs, copies = dict(row["inputs"]), []
    for name, spec in specs.items():
        ref = inputs.get(name)
        if spec.type != "file" or not isinstance(ref, dict) or "artifact_id" not in ref:
            continue
        async with reading(svc.engine) as conn:
            old = (
                (
                    await conn.execute(
                        select(t.artifacts).where(
                            t.artifacts.c.id == ref["artifact_id"], t.artifacts.c.job_id == old_job
                        )
                    )
                )
                .mappings()
                .first()
            )
        if old is None:
            continue
        copy = await svc.store.copy(dict(old), new_job)
        copies.append(copy)
        inputs[name] = {**ref, "artifact_id": copy["id"]}
    row["inputs"] = inputs
    return copies


def _carried(
    steps: Sequence[Any], from_step: str, checkpoint: dict[str, Any] | None, runbook: Runbook
) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """The steps before `from_step` as they ended (their captured values carry over; a failed one
    counts as skipped), and the old checkpoint when the page it holds was reached before that step.
    An approval is never carried over: it stays pending, so the re-run asks it again before it goes on.
    A step that holds approvals (a loop, a child job) and did not succeed cannot be passed over: a
    re-run from after it is refused (it would go on without their decisions, or do them all again)."""
    ids = [st["step_id"] for st in steps]
    if from_step not in ids:
        raise InvalidInput({"from_step": f"must be a step of this job: {', '.join(ids)}"})
    position = ids.index(from_step)
    defined = {step.id: step for step in runbook.steps}
    carried = {}
    for st in steps[:position]:
        if st["action"] == "approval":
            continue
        if st["status"] != StepStatus.SUCCESS.value and _asks_people(defined.get(st["step_id"])):
            raise InvalidInput(
                {
                    "from_step": f"must not lie after step {st['step_id']}, which asks for approvals and "
                    f"ended {st['status']}: re-run from {st['step_id']} (or ?records=failed)"
                }
            )
        status = st["status"] if st["status"] in (StepStatus.SUCCESS.value, StepStatus.SKIPPED.value) else "skipped"
        carried[st["step_id"]] = {"status": status, "captured": st["captured"], "error": None}
    usable = checkpoint and int((checkpoint or {}).get("position", position)) < position
    kept = {k: v for k, v in (checkpoint or {}).items() if k != "lost"} if usable else None
    return carried, kept
