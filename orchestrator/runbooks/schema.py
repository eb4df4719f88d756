"""The runbook document: inputs, settings, schedule, steps and outputs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator import cron
from orchestrator.runbooks.steps import ForEach, Step, StepBase
from orchestrator.states import NOTIFY_EVENTS, SLA_LIMITS

NotifyEvent = Literal[NOTIFY_EVENTS]  # type: ignore[valid-type]

InputType = Literal["string", "integer", "number", "boolean", "records", "file"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class InputSpec(Strict):
    type: InputType = "string"
    title: str | None = None
    description: str | None = None
    required: bool = False
    default: Any = None
    enum: list[Any] | None = None
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    secret: bool = False


class Sla(Strict):
    """Service levels, in seconds: a job over one sends `sla_missed` once for it and shows it."""

    queued: float | None = Field(default=None, gt=0)
    running: float | None = Field(default=None, gt=0)
    waiting: float | None = Field(default=None, gt=0)

    def limits(self) -> dict[str, float]:
        return {name: seconds for name in SLA_LIMITS if (seconds := getattr(self, name)) is not None}


class NotifyRule(Strict):
    """Send a message to `channel` (made with `orchestrator channels add`) on each of these events."""

    on: list[NotifyEvent] = Field(min_length=1)  # type: ignore[valid-type]
    channel: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)


class RunbookSettings(Strict):
    timeout: float = Field(default=600, gt=0)
    step_timeout: float = Field(default=30, gt=0)
    retries: int = Field(default=0, ge=0, le=20)
    concurrency: int | None = Field(default=None, ge=1)
    priority: Literal["low", "normal", "high"] = "normal"
    video: bool = False
    self_approval: bool = True
    dedupe: Literal["none", "inputs"] = "none"
    sla: Sla | None = None


class Schedule(Strict):
    cron: str
    timezone: str = "UTC"
    inputs: dict[str, Any] = Field(default_factory=dict)
    active: bool = True
    catch_up: Literal["none", "latest", "all"] = "none"
    overlap: Literal["skip", "allow", "cancel_previous"] = "skip"

    @model_validator(mode="after")
    def _fires(self) -> Schedule:
        try:
            cron.check(self.cron, self.timezone)
        except cron.CronError as exc:
            raise ValueError(str(exc)) from None
        return self


class Trigger(Strict):
    """When a job of this runbook ends `on` that way, start a job of `runbook` with `inputs`
    (templates that see the ended job's `inputs`, `captured`, `outputs` and `job`)."""

    on: Literal["completed", "failed", "finished"] = "completed"
    runbook: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=100)
    inputs: dict[str, Any] = Field(default_factory=dict)


class Runbook(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=100)
    title: str | None = None
    description: str | None = None
    status: Literal["active", "draft"] = "active"
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    settings: RunbookSettings = Field(default_factory=RunbookSettings)
    schedule: Schedule | None = None
    steps: list[Step] = Field(min_length=1)
    outputs: dict[str, Any] = Field(default_factory=dict)
    triggers: list[Trigger] = Field(default_factory=list)
    notify: list[NotifyRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _name_steps(self) -> Runbook:
        _assign_ids(self.steps, "step-")
        return self

    @property
    def display_title(self) -> str:
        return self.title or self.name

    def all_steps(self) -> list[StepBase]:
        """Every step, nested ones included, in document order."""
        return list(_walk(self.steps))

    @property
    def needs_browser(self) -> bool:
        return any(step.browser for step in self.all_steps())


def _assign_ids(steps: list[Any], prefix: str) -> None:
    for index, step in enumerate(steps, start=1):
        if not step.id:
            step.id = f"{prefix}{index}"
        if isinstance(step, ForEach):
            _assign_ids(step.steps, f"{step.id}.")


def _walk(steps: list[Any]) -> Any:
    for step in steps:
        yield step
        if isinstance(step, ForEach):
            yield from _walk(step.steps)
