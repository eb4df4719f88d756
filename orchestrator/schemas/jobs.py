"""A job as callers ask for it (JobBody, JobFilter, ActionBody) and as the API shows it (Job, JobSummary,
Step, Record, Artifact, AuditEntry)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, ValidationInfo, WithJsonSchema, field_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from orchestrator.schemas.common import (
    MAX_START,
    Data,
    Day,
    Moment,
    Priority,
    Query,
    Request,
    Response,
    Tags,
    Time,
    end_of,
)
from orchestrator.states import Action, JobStatus, RecordStatus, StepStatus

#: Keys of a job's `data` that only the orchestrator writes: a re-run's origin and what it runs again
#: (the approval panel trusts them), the schedule or job that started it.
RESERVED_DATA = frozenset({"rerun_of", "from_step", "only_records", "triggered_by", "schedule_id", "fire_time"})
#: What `validated(JobBody, ..., context=CALLER)` marks: the body comes from outside, not from the orchestrator.
CALLER = {"caller": True}
ArtifactKind = Literal["screenshot", "video", "export", "download", "attachment"]


class JobBody(Request):
    """The body of POST /api/v1/runbooks/{name}/jobs."""

    model_config = ConfigDict(strict=True)

    inputs: dict[str, Any] | None = Field(
        default=None, description="the runbook's typed inputs: GET /api/v1/runbooks/{name}/schema"
    )
    priority: Priority | None = Field(default=None, description="the runbook's settings.priority when not given")
    tags: Tags | None = Field(default=None, description="labels to find the job by (`tag=` in the job list)")
    data: Annotated[
        Data | None,
        Field(
            description="the caller's own values, kept with the job; some keys are the orchestrator's",
            json_schema_extra={"properties": {key: {"not": {}} for key in sorted(RESERVED_DATA)}},
        ),
    ] = None
    run_at: Moment | None = Field(default=None, description="start then, not now (the job is scheduled)")
    idempotency_key: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="the same key again answers the job it made (200) instead of a new one"
    )
    preview: bool | None = Field(default=None, description="a trial run, kept out of the history (drafts too)")
    video: bool = Field(default=False, description="record the session as a WebM video (settings.video)")

    @field_validator("data")
    @classmethod
    def _not_reserved(cls, value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        if value and info.context and info.context.get("caller") and (reserved := sorted(RESERVED_DATA & set(value))):
            raise PydanticCustomError(
                "reserved_key",
                "is set by the orchestrator (re-runs, schedules, triggers); use another key",
                {"at": reserved[0]},
            )
        return value


class JobRequest(JobBody):
    """A job to create: what was asked (JobBody) and who asks (set by the orchestrator, never by a body)."""

    model_config = ConfigDict(strict=False, extra="forbid")

    source: SkipJsonSchema[str] = "api"
    actor: SkipJsonSchema[str | None] = None
    #: The human who owns the job (orchestrator.auth.Principal.human of whoever started it, or the
    #: owner of the token, hook, schedule or parent job that did); self-approval compares it.
    owner: SkipJsonSchema[str | None] = None
    #: The idempotency key is the orchestrator's own (child jobs, triggers, schedule fire times): it
    #: lives in a namespace no request can write. A caller's key is scoped by the caller (`actor`).
    internal: SkipJsonSchema[bool] = False
    parent_id: SkipJsonSchema[str | None] = None


class ActionBody(Request):
    """The body of POST /api/v1/jobs/{id}/{action}."""

    model_config = ConfigDict(strict=True)

    comment: Annotated[str, Field(max_length=2000)] | None = Field(default=None, description="kept in the audit log")
    expected_status: JobStatus | None = Field(
        default=None,
        strict=False,
        description="the status the caller saw: when the job has moved on, 409 instead of acting",
    )
    expected_request: Annotated[str, Field(max_length=64)] | None = Field(
        default=None, description="the requested_at of the approval request the caller decided on"
    )


def _split(value: Any) -> Any:
    return [s for s in value.split(",") if s] if isinstance(value, str) else value


Statuses = Annotated[list[str], BeforeValidator(_split), WithJsonSchema({"type": "string"})]


class JobFilter(Query):
    """The query of GET /api/v1/jobs (and the jobs page)."""

    status: Statuses = Field(default_factory=list, description="comma-separated statuses")
    runbook: str | None = Field(default=None, description="one runbook")
    q: str | None = Field(default=None, description="part of the runbook name or external id")
    tag: str | None = Field(default=None, description="jobs with this tag")
    source: str | None = Field(default=None, description="ui, api, schedule, webhook, trigger, or an ingesting tool")
    start_from: Day | None = Field(default=None, alias="from", description="created at or after")
    until: Annotated[Day | None, BeforeValidator(end_of)] = Field(
        default=None, alias="to", description="created before (a bare date: through that day)"
    )
    limit: int = Field(default=50, ge=1, le=200, description="page size")
    start: int = Field(default=0, ge=0, le=MAX_START, description="offset")


_RECORD_STATUS = "|".join(s.value for s in RecordStatus)


class RecordsQuery(Query):
    """The query of GET /api/v1/jobs/{id}/records."""

    status: Annotated[
        list[str],
        BeforeValidator(_split),
        WithJsonSchema({"type": "string", "pattern": f"^,*(?:(?:{_RECORD_STATUS})(?:,+|$))*$"}),
    ] = Field(default_factory=list, description="comma-separated: success, failed, skipped")
    limit: int = Field(default=100, ge=1, le=500, description="page size")
    start: int = Field(default=0, ge=0, le=MAX_START, description="offset")

    @field_validator("status")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        if any(s not in RecordStatus._value2member_map_ for s in value):
            raise ValueError(f"must be one or more of {', '.join(RecordStatus)}, comma-separated")
        return value


class RerunQuery(Query):
    """The query of POST /api/v1/jobs/{id}/rerun."""

    records: Literal["failed"] | None = Field(
        default=None, description="failed: loop over only the records that failed"
    )
    #: Which steps a job has is the job's own: the document names this one in the operation's text.
    from_step: SkipJsonSchema[str | None] = None


# -- answers ---------------------------------------------------------------------------------------


class Step(Response):
    id: str
    name: str | None = None
    action: str
    status: StepStatus
    started_at: Time | None = None
    finished_at: Time | None = None
    duration_s: float | None = None
    retries: int = 0
    attempt: int = 1
    captured: dict[str, Any] | None = None
    error: str | None = None
    screenshot_url: str | None = None
    diagnostics: dict[str, Any] | None = Field(default=None, description="a failed browser step's: selectors, page")


class Record(Response):
    sequence: int
    record_id: str
    record_name: str | None = None
    status: RecordStatus
    result: Any = None
    error: str | None = None
    processed_at: Time | None = None
    screenshot_url: str | None = None


class Artifact(Response):
    id: str
    kind: ArtifactKind
    name: str
    size: int
    mime_type: str
    step_id: str | None = None
    created_at: Time
    url: str


class AuditEntry(Response):
    at: Time
    actor: str
    action: str
    comment: str | None = None
    outcome: str | None = None
    evidence: str | None = Field(default=None, description="SHA-256 of the screenshot an approver was shown")


class JobError(Response):
    message: str
    step_id: str | None = None


class Metrics(Response):
    steps_succeeded: int = 0
    steps_failed: int = 0
    steps_skipped: int = 0
    retries: int = 0
    duration_s: float | None = None


class RecordCounts(Response):
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0


class JobSummary(Response):
    """A job as lists show it: everything but its inputs, steps, records, artifacts and audit log."""

    id: str
    runbook: str
    runbook_version: int | None = None
    status: JobStatus
    priority: str
    source: str
    external_id: str | None = None
    robot: str | None = None
    created_by: str | None = None
    owner: str | None = None
    outputs: dict[str, Any] | None = None
    tags: list[str] = Field(default_factory=list)
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: Time
    scheduled_at: Time | None = None
    started_at: Time | None = None
    finished_at: Time | None = None
    duration_s: float | None = None
    summary: str | None = None
    error: JobError | None = None
    warnings: bool = False
    metrics: Metrics = Field(default_factory=Metrics)
    record_counts: RecordCounts = Field(default_factory=RecordCounts)
    approval: dict[str, Any] | None = Field(default=None, description="the pending request or the last decision")
    handoff: dict[str, Any] | None = Field(
        default=None,
        description="the last handoff step: step_id, message (the reason a paused job waits), requested_at, "
        "timeout_s, until, and once it ended outcome (done, resumed, timed out) and done_at",
    )
    parent_id: str | None = None
    attempt: int = 1
    preview: bool = False
    video: bool = Field(default=False, description="the session is recorded as a video artifact")
    allowed_actions: list[Action] = Field(
        default_factory=list, description="the actions the job accepts now (SPEC section 5; none for a reported run)"
    )


class RecordsLink(Response):
    href: str
    total: int
    count: int
    next: str | None


class Child(Response):
    id: str
    runbook: str
    status: JobStatus


class Notification(Response):
    """One message about the job to one channel, and how its delivery stands."""

    channel: str
    event: str
    status: Literal["pending", "sending", "sent", "logged", "failed"] = Field(
        description="logged: mail written to the log because ORCH_SMTP_URL is not set; failed: given up after 24 h"
    )
    attempts: int
    last_error: str | None = None
    created_at: Time
    sent_at: Time | None = None


class SlaMissed(Response):
    limit: Literal["queued", "running", "waiting"]
    seconds: float = Field(description="the runbook's limit that the job went over")
    at: Time


class Job(JobSummary):
    """The whole job (SPEC section 6)."""

    inputs: dict[str, Any] = Field(default_factory=dict, description="secrets masked")
    steps: list[Step] = Field(default_factory=list)
    records: list[Record] = Field(
        default_factory=list, description="the first ORCH_JOB_RECORDS (100) records; records_page links to the rest"
    )
    records_page: RecordsLink
    children: list[Child] = Field(default_factory=list)
    artifacts: list[Artifact] = Field(default_factory=list)
    audit: list[AuditEntry] = Field(default_factory=list)
    notifications: list[Notification] = Field(default_factory=list)
    sla_missed: list[SlaMissed] = Field(default_factory=list, description="service levels (settings.sla) missed")


class Page(Response):
    total: int
    start: int
    count: int


class JobList(Page):
    items: list[JobSummary]


class RecordPage(Page):
    items: list[Record]
    next: str | None = Field(description="the next page's URL; null on the last")
