"""for_each: nested steps once per item, each item a record with its own status, result, error and
screenshot, written (and streamed) as it finishes."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, insert, select, update

from orchestrator import templating
from orchestrator.db import tables as t
from orchestrator.db.tables import utcnow
from orchestrator.errors import ApprovalRefused, StepError
from orchestrator.events import Pending
from orchestrator.runbooks.steps import ForEach, StepBase
from orchestrator.states import StepStatus
from orchestrator.views import artifact_url, iso
from worker.committer import prepared
from worker.context import StepContext
from worker.rows import INSERT_ARTIFACT, jsonable

if TYPE_CHECKING:
    from orchestrator.runbooks.schema import Runbook
    from worker.executor import Executor

INSERT_RECORD = prepared(f"{__name__}.INSERT_RECORD", insert(t.records))
UPDATE_COUNTS = prepared(
    f"{__name__}.UPDATE_COUNTS",
    update(t.jobs).where(t.jobs.c.id == bindparam("b_job")).values(record_counts=bindparam("record_counts")),
)


class RecordsMixin:
    """The for_each step of an Executor."""

    #: A re-run of failed records runs only these record ids (None: every item).
    _only_records: frozenset[str] | None = None

    async def _for_each(
        self: Executor, step: ForEach, runbook: Runbook, scope: dict[str, Any], secrets: frozenset[str]
    ) -> dict[str, Any]:
        items = step.items
        if not isinstance(items, list):
            raise StepError(f"for_each needs `items` to be a list; it is {type(items).__name__}.")
        done = await self._recorded_sequences() if self.attempt > 1 else set()
        first_failure: str | None = None
        for sequence, item in enumerate(items, start=1):
            await self._honour_pause()
            if self.cancelled or self._fence.broken:
                raise asyncio.CancelledError  # the step ends cancelled; the records so far stay
            if sequence in done:  # recorded by an earlier attempt of this job
                continue
            status, error = await self._one_record(step, runbook, {**scope, step.as_: item}, secrets, sequence)
            if status == "failed" and first_failure is None:
                first_failure = error
            if status == "failed" and step.stop_on_error:
                raise StepError(f"Record {sequence} failed, and the loop stops on errors: {error}")
        return {"records": len(items)}

    async def _one_record(
        self: Executor,
        step: ForEach,
        runbook: Runbook,
        scope: dict[str, Any],
        secrets: frozenset[str],
        sequence: int,
    ) -> tuple[str, str | None]:
        """Run the nested steps for one item; write its record; return its status and error."""
        try:
            record_id = str(templating.render(step.record_id, scope))
            record_name = str(templating.render(step.record_name, scope)) if step.record_name else None
        except StepError as exc:
            record_id, record_name = str(sequence), None
            return self._save_record(sequence, record_id, record_name, "failed", None, exc.message, None, secrets)
        if self._only_records is not None and record_id not in self._only_records:
            return "not run", None  # a re-run of the failed records only
        before = dict(scope["captured"])
        status, error, last = "success", None, None
        for nested in step.steps:
            if self.cancelled or self._fence.broken:
                raise asyncio.CancelledError  # a record cut short by a cancel is not recorded
            ctx = self._context_for(nested, scope, secrets)
            outcome, _ = await self._attempts(nested, runbook, scope, ctx)
            self._keep(ctx)
            self.tally.retries += ctx.retries
            last = ctx
            if outcome.status is StepStatus.CANCELLED:
                raise asyncio.CancelledError
            if outcome.refused:  # a rejected approval ends the loop and the job, stop_on_error or not
                error = f"{nested.id}: {outcome.error}"
                self._save_record(sequence, record_id, record_name, "failed", None, error, None, secrets)
                raise ApprovalRefused(f"Record {record_id} was refused at {error}")
            if outcome.status is StepStatus.FAILED and not nested.continue_on_error:
                status, error = "failed", f"{nested.id}: {outcome.error}"
                break
        saved = {k: v for k, v in scope["captured"].items() if k not in before or before[k] is not v}
        screenshot = None
        if last is not None and self._page is not None and not self._page.is_closed():
            await self._screenshot(last, f"{step.id}-{sequence}.png")
            self._keep_artifacts(last)
            screenshot = last.artifacts[-1]["id"] if last.artifacts else None
        result = jsonable(saved, secrets) if saved else None
        return self._save_record(sequence, record_id, record_name, status, result, error, screenshot, secrets)

    def _save_record(
        self: Executor,
        sequence: int,
        record_id: str,
        record_name: str | None,
        status: str,
        result: Any,
        error: str | None,
        screenshot: str | None,
        secrets: frozenset[str],
    ) -> tuple[str, str | None]:
        counts = self.tally.counts
        counts["total"] += 1
        counts[{"success": "succeeded", "failed": "failed", "skipped": "skipped"}[status]] += 1
        if status == "failed":
            self.tally.warnings = True
            self.tally.failed_records.append((record_id, error or "failed"))
        row = {
            "job_id": self.job_id,
            "sequence": sequence,
            "record_id": jsonable(record_id, secrets)[:500],
            "record_name": jsonable(record_name, secrets)[:500] if record_name else None,
            "status": status,
            "result": result,
            "error": jsonable(error, secrets) if error else None,
            "processed_at": utcnow(),
            "artifact_id": screenshot,
        }
        view = {
            **{k: v for k, v in row.items() if k not in ("job_id", "artifact_id")},
            "processed_at": iso(row["processed_at"]),
            "screenshot_url": artifact_url(self.job_id, screenshot) if screenshot else None,
        }
        # a record is done once its row is committed: the next record's browser steps wait for that
        self._unsynced = self._write(
            statements=[(INSERT_RECORD, row), (UPDATE_COUNTS, {"b_job": self.job_id, "record_counts": dict(counts)})],
            events=[
                Pending(self.job_id, "record", {"job_id": self.job_id, "record": view, "record_counts": dict(counts)})
            ],
        )
        return status, error

    def _keep(self: Executor, ctx: StepContext) -> None:
        """A nested step's files and log lines (nested steps have no rows of their own)."""
        self._keep_artifacts(ctx)
        if ctx.logs:
            events = [
                Pending(self.job_id, "log", {"job_id": self.job_id, "level": level, "message": message})
                for level, message in ctx.logs
            ]
            ctx.logs.clear()
            self._write(events=events)

    def _keep_artifacts(self: Executor, ctx: StepContext) -> None:
        fresh = [a for a in ctx.artifacts if not a.get("_kept")]
        if fresh:
            self._write(statements=[(INSERT_ARTIFACT, {k: v for k, v in a.items() if k != "_kept"}) for a in fresh])
            for artifact in fresh:
                artifact["_kept"] = True

    async def _recorded_sequences(self: Executor) -> set[int]:
        """The records an earlier attempt wrote; the counts and failures carry on from them."""
        job_id = self.job_id
        await self._flush()
        query = select(t.records.c.sequence, t.records.c.record_id, t.records.c.status, t.records.c.error).where(
            t.records.c.job_id == job_id
        )
        rows = await self.deps.committer.read(lambda conn: conn.execute(query.order_by(t.records.c.sequence)).all())
        counts = self.tally.counts
        for row in rows:
            counts["total"] += 1
            counts[{"success": "succeeded", "failed": "failed", "skipped": "skipped"}[row.status]] += 1
            if row.status == "failed":
                self.tally.warnings = True
                self.tally.failed_records.append((row.record_id, row.error or "failed"))
        return {row.sequence for row in rows}


def is_loop(step: StepBase) -> bool:
    return isinstance(step, ForEach)


def summary_of_records(counts: dict[str, int], failed: list[tuple[str, str]]) -> str:
    """'3 of 4 records succeeded; 1003 failed: Payment rejected by bank'."""
    text = f"{counts['succeeded']} of {counts['total']} records succeeded"
    if counts.get("skipped"):
        text += f", {counts['skipped']} skipped"
    if failed:
        record_id, error = failed[0]
        reason = error.split(": ", 1)[-1]
        text += f"; {record_id} failed: {reason}"
        if len(failed) > 1:
            text += f" (and {len(failed) - 1} more)"
    return text + "."
