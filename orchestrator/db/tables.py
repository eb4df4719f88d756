"""The tables. The database is the source of truth; Redis only carries the queue and wake-ups."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, Integer, Text, UniqueConstraint, false
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """A stored time as an aware UTC datetime (SQLite hands them back naive)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _when(**kw: Any) -> Any:
    return Field(sa_type=DateTime(timezone=True), **kw)


def _json(default: Any = None) -> Any:
    if callable(default):
        return Field(default_factory=default, sa_column=Column(JSON, nullable=False, default=lambda: default()))
    return Field(default=default, sa_column=Column(JSON, nullable=True))


class RunbookVersion(SQLModel, table=True):
    __tablename__ = "runbook_versions"
    __table_args__ = (UniqueConstraint("runbook", "version"), UniqueConstraint("runbook", "hash"))

    id: int | None = Field(default=None, primary_key=True)
    runbook: str = Field(max_length=100, index=True)
    version: int
    hash: str = Field(max_length=64)
    source: str = Field(sa_type=Text)
    file: str = Field(default="", max_length=500)
    created_at: datetime = _when(default_factory=utcnow)


class Job(SQLModel, table=True):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_runbook_created", "runbook", "created_at"),
        Index("ix_jobs_status_created", "status", "created_at"),
        Index("ix_jobs_created", "created_at"),
        UniqueConstraint("runbook", "idempotency_key", name="uq_jobs_idempotency"),
        # a run reported from elsewhere is one job however often it is reported (external_id is NULL otherwise)
        Index("uq_jobs_source_external", "source", "external_id", unique=True),
        Index("ix_jobs_source_created", "source", "created_at"),
        Index("ix_jobs_runbook_inputs", "runbook", "inputs_hash"),
    )

    id: str = Field(primary_key=True, max_length=32)
    #: The runbook's name; for a run reported by another tool (no version), SOURCE/PROCESS.
    runbook: str = Field(max_length=200)
    version_id: int | None = Field(default=None, foreign_key="runbook_versions.id")
    runbook_version: int | None = None
    status: str = Field(max_length=24)
    priority: str = Field(default="normal", max_length=8)
    source: str = Field(default="api", max_length=32, index=True)
    external_id: str | None = Field(default=None, max_length=200, index=True)
    robot: str | None = Field(default=None, max_length=200)
    created_by: str | None = Field(default=None, max_length=200)
    #: The human who owns the job: who started it, or who owns the token, webhook, schedule or parent
    #: job that did (None: nobody, such as a schedule in a runbook file). Self-approval compares this.
    owner: str | None = Field(default=None, max_length=200)
    inputs: dict[str, Any] = _json(dict)
    secret_inputs: str | None = Field(default=None, sa_type=Text)
    outputs: dict[str, Any] | None = _json()
    tags: list[str] = _json(list)
    data: dict[str, Any] = _json(dict)
    created_at: datetime = _when(default_factory=utcnow)
    scheduled_at: datetime | None = _when(default=None)
    started_at: datetime | None = _when(default=None)
    finished_at: datetime | None = _when(default=None)
    duration_s: float | None = None
    summary: str | None = Field(default=None, sa_type=Text)
    error_message: str | None = Field(default=None, sa_type=Text)
    error_step_id: str | None = Field(default=None, max_length=200)
    warnings: bool = False
    metrics: dict[str, Any] = _json(dict)
    record_counts: dict[str, Any] = _json(dict)
    approval: dict[str, Any] | None = _json()
    #: The last handoff (a person acts in the live browser): step, message (the pause's reason), when
    #: asked, its time limit and `until`, and how it ended.
    handoff: dict[str, Any] | None = _json()
    checkpoint: dict[str, Any] | None = _json()
    parent_id: str | None = Field(default=None, max_length=32, index=True)
    attempt: int = 1
    #: Stored scoped by who may reuse it: "SCOPE|KEY" (orchestrator/jobs.py `scoped_key`).
    idempotency_key: str | None = Field(default=None, max_length=400)
    #: A trial run (of a draft, or asked for): marked, and left out of the run history by default.
    preview: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    #: A keyed hash of all the inputs, secrets included, for settings.dedupe: inputs.
    inputs_hash: str | None = Field(default=None, max_length=64)
    #: Record the session as a video (asked for with the job, or settings.video).
    video: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    updated_at: datetime = _when(default_factory=utcnow)


class JobStep(SQLModel, table=True):
    __tablename__ = "job_steps"
    __table_args__ = (UniqueConstraint("job_id", "step_id"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(foreign_key="jobs.id", max_length=32, index=True)
    position: int
    step_id: str = Field(max_length=200)
    name: str | None = Field(default=None, max_length=500)
    action: str = Field(max_length=32)
    status: str = Field(default="pending", max_length=16)
    started_at: datetime | None = _when(default=None)
    finished_at: datetime | None = _when(default=None)
    duration_s: float | None = None
    retries: int = 0
    attempt: int = 1
    captured: dict[str, Any] | None = _json()
    error: str | None = Field(default=None, sa_type=Text)
    #: For a failed step: the selectors tried, the page's URL and title, its console errors, and
    #: the screenshot taken when it failed.
    diagnostics: dict[str, Any] | None = _json()


class JobRecord(SQLModel, table=True):
    __tablename__ = "job_records"
    __table_args__ = (UniqueConstraint("job_id", "sequence"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(foreign_key="jobs.id", max_length=32, index=True)
    sequence: int
    record_id: str = Field(max_length=500)
    record_name: str | None = Field(default=None, max_length=500)
    status: str = Field(max_length=16)
    result: Any = _json()
    error: str | None = Field(default=None, sa_type=Text)
    processed_at: datetime | None = _when(default=None)
    artifact_id: str | None = Field(default=None, max_length=32)  # the screenshot after its last step


class Artifact(SQLModel, table=True):
    __tablename__ = "artifacts"

    id: str = Field(primary_key=True, max_length=32)
    job_id: str = Field(foreign_key="jobs.id", max_length=32, index=True)
    step_id: str | None = Field(default=None, max_length=200)
    kind: str = Field(max_length=16)
    name: str = Field(max_length=500)
    path: str = Field(max_length=500)
    size: int = Field(default=0, sa_type=BigInteger)
    mime_type: str = Field(default="application/octet-stream", max_length=200)
    sha256: str | None = Field(default=None, max_length=64)
    created_at: datetime = _when(default_factory=utcnow)


class JobEvent(SQLModel, table=True):
    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_job_id_id", "job_id", "id"), {"sqlite_autoincrement": True})

    id: int | None = Field(
        default=None,
        sa_column=Column(Integer().with_variant(BigInteger, "postgresql"), primary_key=True, autoincrement=True),
    )
    job_id: str = Field(max_length=32)
    type: str = Field(max_length=16)
    data: dict[str, Any] = _json(dict)
    created_at: datetime = _when(default_factory=utcnow)


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit"

    id: int | None = Field(default=None, primary_key=True)
    #: Not a foreign key: the audit log is append-only and outlives the jobs it speaks of.
    job_id: str = Field(max_length=32, index=True)
    at: datetime = _when(default_factory=utcnow)
    actor: str = Field(max_length=200)
    action: str = Field(max_length=32)
    comment: str | None = Field(default=None, sa_type=Text)
    outcome: str = Field(default="ok", max_length=200)
    #: For an approval decision: the SHA-256 of the screenshot the approver was shown.
    evidence: str | None = Field(default=None, max_length=64)


class User(SQLModel, table=True):
    __tablename__ = "users"

    name: str = Field(primary_key=True, max_length=100)
    #: One role, or several as a comma list (built-in roles give permissions; others name groups).
    role: str = Field(max_length=200)
    password_hash: str = Field(max_length=300)
    #: A disabled user cannot sign in, and their sessions and tokens stop working.
    disabled_at: datetime | None = _when(default=None)
    created_at: datetime = _when(default_factory=utcnow)
    updated_at: datetime = _when(default_factory=utcnow)


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_tokens"

    id: str = Field(primary_key=True, max_length=16)
    name: str = Field(max_length=100)
    role: str = Field(max_length=200)
    token_hash: str = Field(max_length=64, unique=True)
    created_by: str | None = Field(default=None, max_length=200)
    #: The user the token acts for (jobs it starts are theirs); None for a service token.
    owner: str | None = Field(default=None, max_length=200)
    created_at: datetime = _when(default_factory=utcnow)
    revoked_at: datetime | None = _when(default=None)


class Hook(SQLModel, table=True):
    """A webhook that starts jobs of one runbook; only the SHA-256 of its token is kept."""

    __tablename__ = "hooks"

    id: str = Field(primary_key=True, max_length=16)
    runbook: str = Field(max_length=100, index=True)
    token_hash: str = Field(max_length=64, unique=True)
    created_by: str | None = Field(default=None, max_length=200)
    #: The human who made the hook: the jobs it starts are theirs.
    owner: str | None = Field(default=None, max_length=200)
    created_at: datetime = _when(default_factory=utcnow)
    revoked_at: datetime | None = _when(default=None)


class ScheduleRow(SQLModel, table=True):
    """A cron schedule of a runbook: from its file (`origin` runbook) or made over the API.
    `next_fire_at` is the scheduler's state: schedulers advance it by compare-and-set."""

    __tablename__ = "schedules"

    id: str = Field(primary_key=True, max_length=120)
    runbook: str = Field(max_length=100, index=True)
    origin: str = Field(default="api", max_length=16)
    cron: str = Field(max_length=200)
    timezone: str = Field(default="UTC", max_length=64)
    inputs: dict[str, Any] = _json(dict)
    secret_inputs: str | None = Field(default=None, sa_type=Text)
    priority: str | None = Field(default=None, max_length=8)
    catch_up: str = Field(default="none", max_length=8)
    overlap: str = Field(default="skip", max_length=16)
    active: bool = True
    #: For a schedule from a runbook file: the hash of its definition there, so a changed file
    #: resets it while a pause made on the page survives re-reading an unchanged file.
    definition: str | None = Field(default=None, max_length=64)
    next_fire_at: datetime | None = _when(default=None)
    last_fire_at: datetime | None = _when(default=None)
    last_job_id: str | None = Field(default=None, max_length=32)
    created_by: str | None = Field(default=None, max_length=200)
    #: The human who made the schedule (None for one from a runbook file): its jobs are theirs.
    owner: str | None = Field(default=None, max_length=200)
    created_at: datetime = _when(default_factory=utcnow)
    updated_at: datetime = _when(default_factory=utcnow)


class Session(SQLModel, table=True):
    """A signed-in browser. The id is the SHA-256 of the random id in the user's cookie."""

    __tablename__ = "sessions"

    id: str = Field(primary_key=True, max_length=64)
    user_name: str = Field(foreign_key="users.name", max_length=100, index=True)
    created_at: datetime = _when(default_factory=utcnow)
    expires_at: datetime = _when()


class Channel(SQLModel, table=True):
    """A named place notifications go: mail addresses, a Slack webhook or a signed webhook. Its
    target (addresses, URL, secret) is sealed with ORCH_SECRET_KEY and never shown again."""

    __tablename__ = "channels"

    name: str = Field(primary_key=True, max_length=100)
    kind: str = Field(max_length=16)  # email | slack | webhook
    sealed: str = Field(sa_type=Text)
    #: What the channel list shows: the addresses, or a URL's scheme and host (never its path or secret).
    summary: str = Field(max_length=400)
    created_by: str | None = Field(default=None, max_length=200)
    created_at: datetime = _when(default_factory=utcnow)


class Notification(SQLModel, table=True):
    """One message to one channel about one job (or schedule) event: the outbox the scheduler sends
    from, retried with backoff. `dedupe` (job, event, channel, occasion) makes it one message however
    many schedulers see the event."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_due", "status", "next_at"),)

    id: int | None = Field(default=None, primary_key=True)
    dedupe: str = Field(max_length=400, unique=True)
    job_id: str | None = Field(default=None, max_length=32, index=True)
    runbook: str = Field(max_length=200)
    event: str = Field(max_length=32)
    channel: str = Field(max_length=100)
    #: What the message is about beyond the job: the reminder's number, the SLA limit, the fire time.
    detail: dict[str, Any] = _json(dict)
    status: str = Field(default="pending", max_length=16)  # pending | sending | sent | logged | failed
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=500)
    next_at: datetime = _when(default_factory=utcnow)
    #: While `sending`: when a sender that died mid-send is presumed gone and another may try.
    lease_until: datetime | None = _when(default=None)
    created_at: datetime = _when(default_factory=utcnow)
    sent_at: datetime | None = _when(default=None)


class SlaMiss(SQLModel, table=True):
    """A job over one of its runbook's service levels (`settings.sla`): recorded once per limit."""

    __tablename__ = "sla_misses"

    job_id: str = Field(primary_key=True, max_length=32)
    limit: str = Field(primary_key=True, max_length=16)  # queued | running | waiting
    seconds: float
    at: datetime = _when(default_factory=utcnow)


class Cursor(SQLModel, table=True):
    """How far a reader of job_events has got (the notifier's: the last event it turned into messages)."""

    __tablename__ = "cursors"

    name: str = Field(primary_key=True, max_length=32)
    position: int = Field(default=0, sa_type=BigInteger)


metadata = SQLModel.metadata
jobs = metadata.tables["jobs"]
steps = metadata.tables["job_steps"]
records = metadata.tables["job_records"]
artifacts = metadata.tables["artifacts"]
events = metadata.tables["job_events"]
audit = metadata.tables["audit"]
versions = metadata.tables["runbook_versions"]
users = metadata.tables["users"]
tokens = metadata.tables["api_tokens"]
sessions = metadata.tables["sessions"]
channels = metadata.tables["channels"]
notifications = metadata.tables["notifications"]
sla_misses = metadata.tables["sla_misses"]
cursors = metadata.tables["cursors"]
hooks = metadata.tables["hooks"]
schedules = metadata.tables["schedules"]
