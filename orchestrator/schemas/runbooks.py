"""Runbooks and what hangs off them as the API shows them: definitions, versions, run history (SPEC
section 6's page shape), webhooks; and the audit log and health answers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from orchestrator.schemas.common import MAX_START, Query, Response, Stamp, Time
from orchestrator.schemas.jobs import Artifact, AuditEntry, JobError, Page
from orchestrator.schemas.schedules import Schedule
from orchestrator.states import JobStatus

HistorySort = Literal["createdAt", "-createdAt", "duration", "-duration"]


class StepOutline(Response):
    id: str
    name: str | None = None
    action: str


class Runbook(Response):
    name: str
    title: str
    description: str | None = None
    status: Literal["active", "draft"]
    version: int
    hash: str
    inputs: dict[str, dict[str, Any]] = Field(description="each input's declaration (secret defaults masked)")
    settings: dict[str, Any]
    schedule: Schedule | None = Field(default=None, description="the one its file defines")
    schedules: list[Schedule] = Field(default_factory=list, description="every schedule of it")
    steps: list[StepOutline] = Field(default_factory=list)
    steps_count: int = 0
    outputs: list[str] = Field(default_factory=list)


class RunbookList(Response):
    items: list[Runbook]
    problems: list[str] = Field(description="runbook files that did not load, each as FILE:LINE: message")


class Version(Response):
    version: int
    hash: str
    created_at: Stamp
    source: str = Field(description="the file, secret values masked")
    diff: str | None = Field(default=None, description="a unified diff from the version before")


class VersionList(Response):
    items: list[Version]


class HistoryQuery(Query):
    """The query of GET /api/v1/runbooks/{name}/history."""

    sort: HistorySort = Field(default="-createdAt", description="order")
    limit: int = Field(default=30, ge=1, le=200, description="page size")
    start: int = Field(default=0, ge=0, le=MAX_START, description="offset")
    previews: Literal["include"] | None = Field(default=None, description="include preview runs")


class Task(Response):
    key: str = Field(description="the step's action")
    opts: dict[str, Any]


class Outcome(Response):
    key: str
    success: bool
    status: str
    message: str


class Progress(Response):
    task: Task
    result: Outcome


class HistoryEntry(Response):
    id: str
    runbook: str
    runbook_version: int | None = None
    status: JobStatus
    success: bool
    warnings: bool
    duration: list[Time | None] = Field(min_length=2, max_length=2, description="[started, finished]")
    data: dict[str, Any]
    summary: str | None = None
    error: JobError | None = None
    progress: list[Progress]
    createdAt: Time


class Link(Response):
    href: str


class HistoryLinks(Response):
    """`next` and `prev` only where there is such a page."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=False)

    self: Link
    next: Link | None = None
    prev: Link | None = None


class HistoryEmbedded(Response):
    job_history: list[HistoryEntry] = Field(alias="job-history")


class HistoryPage(Page):
    links: HistoryLinks = Field(alias="_links")
    embedded: HistoryEmbedded = Field(alias="_embedded")


class Hook(Response):
    id: str
    runbook: str
    created_by: str | None = None
    owner: str | None = None
    created_at: Stamp
    revoked_at: Stamp | None = None


class HookList(Response):
    items: list[Hook]


class HookCreated(Response):
    id: str
    runbook: str
    url: str = Field(description="where to call it with the token in the path")
    token: str = Field(description="shown only now")


class AuditQuery(Query):
    """The query of GET /api/v1/audit."""

    job_id: str | None = Field(default=None, description="one job's entries")
    actor: str | None = Field(default=None, description="one actor's entries")
    action: str | None = Field(default=None, description="one action, such as approve or delete")
    limit: int = Field(default=100, ge=1, le=500, description="page size")
    start: int = Field(default=0, ge=0, le=MAX_START, description="offset")


class AuditRow(AuditEntry):
    """An entry of the audit log, which outlives its job."""

    job_id: str


class AuditPage(Page):
    items: list[AuditRow]


class Health(Response):
    status: Literal["ok", "unavailable"]
    database: str
    redis: str


class IngestFiles(Response):
    files: list[Artifact]
