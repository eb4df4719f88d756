"""What a run counts (steps, retries, records, the failure that ends it) and what it ends with: its
status, outputs, metrics, summary and report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator import templating
from orchestrator.db.tables import utcnow
from orchestrator.errors import OrchestratorError
from orchestrator.runbooks.schema import Runbook
from orchestrator.states import JobStatus, RecordStatus, StepStatus
from worker.masks import jsonable
from worker.steps import StepOutcome

#: A record's status -> its count in `record_counts`.
COUNTED = {RecordStatus.SUCCESS: "succeeded", RecordStatus.FAILED: "failed", RecordStatus.SKIPPED: "skipped"}


@dataclass
class Tally:
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    retries: int = 0
    first_error: tuple[str, str] | None = None  # (step id, message) of the failure that ended the job
    warnings: bool = False
    counts: dict[str, int] = field(default_factory=lambda: {"total": 0, "succeeded": 0, "failed": 0, "skipped": 0})
    failed_records: list[tuple[str, str]] = field(default_factory=list)  # (record id, error), in order

    def count(self, outcome: StepOutcome, retries: int, step_id: str, fatal: bool) -> None:
        """Tally the step; a failure the runbook does not allow (`fatal`) becomes the job's error, even
        after failures it allowed."""
        self.retries += retries
        if outcome.status is StepStatus.SUCCESS:
            self.succeeded += 1
        elif outcome.status is StepStatus.SKIPPED:
            self.skipped += 1
        elif outcome.status is StepStatus.FAILED:
            self.failed += 1
            self.warnings = True
            if fatal and self.first_error is None:
                self.first_error = (step_id, outcome.error or "The step failed.")

    def count_record(self, status: RecordStatus, record_id: str, error: str | None) -> None:
        self.counts["total"] += 1
        self.counts[COUNTED[status]] += 1
        if status is RecordStatus.FAILED:
            self.warnings = True
            self.failed_records.append((record_id, error or "failed"))

    def end(
        self, runbook: Runbook, scope: dict[str, Any], elapsed: float, secrets: frozenset[str], video_started_at: Any
    ) -> End:
        """How the run ends: completed, or failed by the first failure it did not allow (a failed step
        without continue_on_error, a rejection, the job's time limit) or by its outputs."""
        outputs, output_error = render_outputs(runbook, scope, secrets)
        fatal = self.first_error
        if output_error and not fatal:
            fatal = ("", output_error)
        status = JobStatus.FAILED if fatal else JobStatus.COMPLETED
        metrics: dict[str, Any] = {
            "steps_succeeded": self.succeeded,
            "steps_failed": self.failed,
            "steps_skipped": self.skipped,
            "retries": self.retries,
            "duration_s": round(elapsed, 3),
        }
        if video_started_at:
            metrics["video_started_at"] = video_started_at
        summary = summary_of(runbook, status, fatal, metrics)
        if self.counts["total"] and status is JobStatus.COMPLETED:
            summary = summary_of_records(self.counts, self.failed_records)
        values = {
            "record_counts": self.counts,
            "finished_at": utcnow(),
            "duration_s": round(elapsed, 3),
            "metrics": metrics,
            "outputs": outputs,
            "summary": summary,
            "warnings": self.warnings and status is JobStatus.COMPLETED,
            "error_message": fatal[1] if fatal else None,
            "error_step_id": (fatal[0] or None) if fatal else None,
        }
        report = {
            "job_id": scope["job"]["id"],
            "status": status.value,
            "metrics": metrics,
            "record_counts": self.counts,
            "duration_s": round(elapsed, 3),
            "summary": summary,
        }
        return End(status, outputs, values, report)


@dataclass(frozen=True)
class End:
    status: JobStatus
    outputs: Any
    values: dict[str, Any]  # the job's columns
    report: dict[str, Any]  # the `report` event's data


def render_outputs(
    runbook: Runbook, scope: dict[str, Any], secrets: frozenset[str]
) -> tuple[dict[str, Any], str | None]:
    try:
        return jsonable(templating.render(runbook.outputs, scope), secrets), None
    except OrchestratorError as exc:
        return {}, f"The outputs could not be computed: {exc.message}"


def summary_of(runbook: Runbook, status: JobStatus, fatal: tuple[str, str] | None, metrics: dict[str, Any]) -> str:
    if fatal:
        where = f"at step {fatal[0]}" if fatal[0] else ""
        return f"{runbook.display_title} failed {where}: {fatal[1]}".replace(" :", ":")
    done = metrics["steps_succeeded"]
    extra = f", {metrics['steps_failed']} failed but allowed to" if metrics["steps_failed"] else ""
    return f"{runbook.display_title} completed {done} steps in {metrics['duration_s']:.1f} s{extra}."


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
