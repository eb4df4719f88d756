"""What another tool reports of a run it made: POST /api/v1/ingest/jobs (IngestJob) and PATCH of it
(IngestPatch), with its records (IngestRecord)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from orchestrator.schemas.common import Data, Moment, Request, Tags
from orchestrator.states import JobStatus, RecordStatus

#: What other tools call their statuses, mapped to ours (in any letter case).
STATUSES: dict[str, JobStatus] = {
    **{s.value: s for s in JobStatus},
    "pending": JobStatus.QUEUED,
    "new": JobStatus.QUEUED,
    "in_progress": JobStatus.RUNNING,
    "started": JobStatus.RUNNING,
    "successful": JobStatus.COMPLETED,
    "success": JobStatus.COMPLETED,
    "succeeded": JobStatus.COMPLETED,
    "done": JobStatus.COMPLETED,
    "faulted": JobStatus.FAILED,
    "error": JobStatus.FAILED,
    "stopped": JobStatus.CANCELLED,
    "canceled": JobStatus.CANCELLED,
    "aborted": JobStatus.CANCELLED,
    "suspended": JobStatus.WAITING_FOR_APPROVAL,
}
RECORD_STATUSES: dict[str, RecordStatus] = {
    "success": RecordStatus.SUCCESS,
    "successful": RecordStatus.SUCCESS,
    "succeeded": RecordStatus.SUCCESS,
    "completed": RecordStatus.SUCCESS,
    "failed": RecordStatus.FAILED,
    "faulted": RecordStatus.FAILED,
    "error": RecordStatus.FAILED,
    "skipped": RecordStatus.SKIPPED,
}
MAX_RECORDS = 10_000


def _spellings(names: dict[str, Any]) -> list[str]:
    return sorted({form for name in names for form in (name, name.capitalize(), name.upper())})


def _mapped(table: dict[str, Any]) -> Any:
    def lookup(value: Any) -> Any:
        found = table.get(value.lower()) if isinstance(value, str) else None
        if found is None:
            raise ValueError(f"must be one of {', '.join(sorted(table))}")
        return found

    return BeforeValidator(lookup)


Text = Annotated[str, StringConstraints(max_length=10_000)]
Status = Annotated[
    JobStatus,
    _mapped(STATUSES),
    Field(json_schema_extra={"enum": _spellings(STATUSES)}, description="other tools' names are mapped"),
]


class IngestRecord(Request):
    """One record of a reported run; one sequence given twice: the later record is kept."""

    model_config = ConfigDict(strict=True)

    sequence: int | None = Field(
        default=None, ge=0, le=2**31 - 1, description="the record's position; default: its index + 1"
    )
    record_id: Annotated[str, Field(min_length=1)] | int
    record_name: str | None = None
    status: Annotated[
        RecordStatus, _mapped(RECORD_STATUSES), Field(json_schema_extra={"enum": _spellings(RECORD_STATUSES)})
    ]
    result: Any = None
    error: str | None = None
    processed_at: Moment | None = None


Records = Annotated[
    list[IngestRecord],
    Field(max_length=MAX_RECORDS, description="each record's sequence (given, else its position from 1) differs: 422"),
]


class IngestPatch(Request):
    """What PATCH /api/v1/ingest/jobs/{id} may change of a reported run."""

    model_config = ConfigDict(strict=True)

    robot: Annotated[str, Field(max_length=200)] | None = None
    status: Status | None = None
    started_at: Moment | None = None
    finished_at: Moment | None = Field(default=None, description="not before started_at")
    summary: Annotated[str, Field(max_length=2000)] | None = None
    error: Text | None = None
    tags: Tags = Field(default_factory=list)
    data: Data = Field(default_factory=dict)
    records: Records = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _distinct_records(cls, body: Any) -> Any:
        records = body.get("records") if isinstance(body, dict) else None
        if isinstance(records, list):
            _refuse_repeats(records)
        return body


class IngestJob(IngestPatch):
    """The body of POST /api/v1/ingest/jobs: `source` + `external_id` identify the run."""

    process: Annotated[str, Field(min_length=1, max_length=100)]
    source: Annotated[str, Field(min_length=1, max_length=32)]
    external_id: Annotated[str, Field(min_length=1, max_length=200)]
    status: Status  # type: ignore[assignment]


def _refuse_repeats(records: list[Any]) -> None:
    """Each record's sequence (given, else its position from 1) is its own: a second one is refused."""
    seen: dict[Any, int] = {}
    for index, item in enumerate(records):
        sequence = item.get("sequence", index + 1) if isinstance(item, dict) else None
        if sequence is None or isinstance(sequence, bool) or not isinstance(sequence, int):
            continue  # the record's own model names what is wrong with it
        if sequence in seen:
            raise PydanticCustomError(
                "repeated",
                "must be different for each record: records[{first}] has sequence {sequence} too",
                {"first": seen[sequence], "sequence": sequence, "at": f"records[{index}].sequence"},
            )
        seen[sequence] = index
