"""The record loop (for_each): nested steps once per item, each item a record with its own status,
result, error and screenshot, written (and streamed) as it finishes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from orchestrator import templating
from orchestrator.db import tables as t
from orchestrator.db.tables import utcnow
from orchestrator.errors import ApprovalRefused, StepError
from orchestrator.events import Pending
from orchestrator.runbooks.schema import Runbook
from orchestrator.runbooks.steps import ForEach, StepBase
from orchestrator.states import RecordStatus, StepStatus
from orchestrator.views import artifact_url, iso
from worker.committer import Committer
from worker.context import StepContext
from worker.control import Control
from worker.masks import jsonable
from worker.session import Session
from worker.statements import INSERT_ARTIFACT, INSERT_RECORD, UPDATE_COUNTS
from worker.steps import StepOutcome
from worker.tally import Tally
from worker.writer import RunWriter

#: Runs one nested step: (step, runbook, scope, secrets) -> how it ended, and its context.
RunStep = Callable[[StepBase, Runbook, dict[str, Any], frozenset[str]], Awaitable[tuple[StepOutcome, StepContext]]]


class RecordLoop:
    def __init__(
        self,
        writer: RunWriter,
        control: Control,
        session: Session,
        tally: Tally,
        committer: Committer,
        run_step: RunStep,
        only: frozenset[str] | None = None,
    ) -> None:
        self._writer = writer
        self._control = control
        self._session = session
        self._tally = tally
        self._committer = committer
        self._run_step = run_step
        #: A re-run of failed records runs only these record ids (None: every item).
        self.only = only

    @property
    def _halted(self) -> bool:
        return self._control.cancelled or self._writer.fenced

    async def run(
        self, step: ForEach, runbook: Runbook, scope: dict[str, Any], secrets: frozenset[str]
    ) -> dict[str, Any]:
        items = step.items
        if not isinstance(items, list):
            raise StepError(f"for_each needs `items` to be a list; it is {type(items).__name__}.")
        done = await self._recorded_sequences() if self._writer.attempt > 1 else set()
        for sequence, item in enumerate(items, start=1):
            await self._control.honour_pause()
            if self._halted:
                raise asyncio.CancelledError  # the step ends cancelled; the records so far stay
            if sequence in done:  # recorded by an earlier attempt of this job
                continue
            status, error = await self._one_record(step, runbook, {**scope, step.as_: item}, secrets, sequence)
            if status is RecordStatus.FAILED and step.stop_on_error:
                raise StepError(f"Record {sequence} failed, and the loop stops on errors: {error}")
        return {"records": len(items)}

    async def _one_record(
        self, step: ForEach, runbook: Runbook, scope: dict[str, Any], secrets: frozenset[str], sequence: int
    ) -> tuple[RecordStatus | None, str | None]:
        """Run the nested steps for one item; write its record; return its status (None: not run) and error."""
        try:
            record_id = str(templating.render(step.record_id, scope))
            record_name = str(templating.render(step.record_name, scope)) if step.record_name else None
        except StepError as exc:
            record = Record(sequence, str(sequence), None, secrets)
            return self._save(record, RecordStatus.FAILED, None, exc.message, None)
        if self.only is not None and record_id not in self.only:
            return None, None  # a re-run of the failed records only
        record = Record(sequence, record_id, record_name, secrets)
        before = dict(scope["captured"])
        status, error, last = RecordStatus.SUCCESS, None, None
        for nested in step.steps:
            if self._halted:
                raise asyncio.CancelledError  # a record cut short by a cancel is not recorded
            outcome, ctx = await self._run_step(nested, runbook, scope, secrets)
            self._keep(ctx)
            self._tally.retries += ctx.retries
            last = ctx
            if outcome.status is StepStatus.CANCELLED:
                raise asyncio.CancelledError
            if outcome.refused:  # a rejected approval ends the loop and the job, stop_on_error or not
                error = f"{nested.id}: {outcome.error}"
                self._save(record, RecordStatus.FAILED, None, error, None)
                raise ApprovalRefused(f"Record {record_id} was refused at {error}")
            if outcome.status is StepStatus.FAILED and not nested.continue_on_error:
                status, error = RecordStatus.FAILED, f"{nested.id}: {outcome.error}"
                break
        saved = {k: v for k, v in scope["captured"].items() if k not in before or before[k] is not v}
        screenshot = None
        page = self._session.page
        if last is not None and page is not None and not page.is_closed():
            await self._session.screenshot(last, f"{step.id}-{sequence}.png")
            self._keep_artifacts(last)
            screenshot = last.artifacts[-1]["id"] if last.artifacts else None
        result = jsonable(saved, secrets) if saved else None
        return self._save(record, status, result, error, screenshot)

    def _save(
        self, record: Record, status: RecordStatus, result: Any, error: str | None, screenshot: str | None
    ) -> tuple[RecordStatus, str | None]:
        job_id, secrets = self._writer.job_id, record.secrets
        self._tally.count_record(status, record.record_id, error)
        counts = self._tally.counts
        row = {
            "job_id": job_id,
            "sequence": record.sequence,
            "record_id": jsonable(record.record_id, secrets)[:500],
            "record_name": jsonable(record.record_name, secrets)[:500] if record.record_name else None,
            "status": status.value,
            "result": result,
            "error": jsonable(error, secrets) if error else None,
            "processed_at": utcnow(),
            "artifact_id": screenshot,
        }
        view = {
            **{k: v for k, v in row.items() if k not in ("job_id", "artifact_id")},
            "processed_at": iso(row["processed_at"]),
            "screenshot_url": artifact_url(job_id, screenshot) if screenshot else None,
        }
        # a record is done once its row is committed: the next record's browser steps wait for that
        written = self._writer.write(
            statements=[(INSERT_RECORD, row), (UPDATE_COUNTS, {"b_job": job_id, "record_counts": dict(counts)})],
            events=[Pending(job_id, "record", {"job_id": job_id, "record": view, "record_counts": dict(counts)})],
        )
        self._writer.unsynced(written)
        return status, error

    def _keep(self, ctx: StepContext) -> None:
        """A nested step's files and log lines (nested steps have no rows of their own)."""
        self._keep_artifacts(ctx)
        if ctx.logs:
            events = [self._writer.log(level, message) for level, message in ctx.logs]
            ctx.logs.clear()
            self._writer.write(events=events)

    def _keep_artifacts(self, ctx: StepContext) -> None:
        fresh = [a for a in ctx.artifacts if not a.get("_kept")]
        if fresh:
            self._writer.write(
                statements=[(INSERT_ARTIFACT, {k: v for k, v in a.items() if k != "_kept"}) for a in fresh]
            )
            for artifact in fresh:
                artifact["_kept"] = True

    async def _recorded_sequences(self) -> set[int]:
        """The records an earlier attempt wrote; the counts and failures carry on from them."""
        job_id = self._writer.job_id
        await self._writer.flush()
        query = select(t.records.c.sequence, t.records.c.record_id, t.records.c.status, t.records.c.error).where(
            t.records.c.job_id == job_id
        )
        rows = await self._committer.read(lambda conn: conn.execute(query.order_by(t.records.c.sequence)).all())
        for row in rows:
            self._tally.count_record(RecordStatus(row.status), row.record_id, row.error)
        return {row.sequence for row in rows}


@dataclass(frozen=True)
class Record:
    """One item of the loop, as its record names it."""

    sequence: int
    record_id: str
    record_name: str | None
    secrets: frozenset[str]


def is_loop(step: StepBase) -> bool:
    return isinstance(step, ForEach)
