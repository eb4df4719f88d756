"""Schedules as callers make and change them (ScheduleCreate, ScheduleUpdate) and as the API shows them."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from pydantic import ConfigDict, Field, field_validator

from orchestrator.schemas.common import Priority, Request, Response, Time

CatchUp = Literal["none", "latest", "all"]
Overlap = Literal["skip", "allow", "cancel_previous"]
ZONES = frozenset(available_timezones())


def _names(*words: str) -> str:
    return "|".join(f"{w}|{w.upper()}|{w.capitalize()}" for w in words)


def _field(values: str, extra: str = "") -> str:
    one = rf"(?:\*|(?:{values})(?:-(?:{values}))?)(?:/[1-9][0-9]?)?"
    return rf"(?:{extra}{one}(?:,{one})*)"


def _cron_pattern() -> str:
    """The cron expressions the API takes: five fields, or six with seconds last, or an @alias. A day of
    the month past the 28th needs the month `*`, so that every expression it takes fires."""
    minute, hour = r"[0-5]?[0-9]", r"[01]?[0-9]|2[0-3]"
    month = r"0?[1-9]|1[0-2]|" + _names(
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"
    )
    weekday = r"[0-7]|" + _names("sun", "mon", "tue", "wed", "thu", "fri", "sat")
    days = (
        rf"(?:{_field(r'0?[1-9]|1[0-9]|2[0-8]', '[?]|')} {_field(month)}"
        rf"|{_field(r'0?[1-9]|[12][0-9]|3[01]', '[?]|')} [*])"
    )
    fields = rf"{_field(minute)} {_field(hour)} {days} {_field(weekday, '[?]|')}(?: {_field(minute)})?"
    return rf"^(?:@(?:yearly|annually|monthly|weekly|daily|midnight|hourly)|{fields})$"


CRON = _cron_pattern()
_CRON = re.compile(CRON)


class ScheduleUpdate(Request):
    """The body of PATCH /api/v1/schedules/{id}; of a schedule from a runbook file, only `active`."""

    model_config = ConfigDict(strict=True)

    cron: Annotated[str, Field(json_schema_extra={"pattern": CRON})] | None = Field(
        default=None, description='five fields, or six with seconds last, such as "0 6 * * 1-5"'
    )
    timezone: Annotated[str, Field(json_schema_extra={"enum": sorted(ZONES)})] | None = Field(
        default=None, description="an IANA time zone name"
    )
    inputs: dict[str, Any] | None = Field(default=None, description="the runbook's inputs (its schema)")
    priority: Priority | None = None
    catch_up: CatchUp | None = Field(default=None, description="fire times missed while no scheduler ran")
    overlap: Overlap | None = Field(default=None, description="when the previous job still runs")
    active: bool | None = Field(default=None, description="false pauses it, true resumes it")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None and not _CRON.match(value):
            raise ValueError('is not a cron expression of five fields (six with seconds last), such as "0 6 * * 1-5"')
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None and value not in ZONES:
            raise ValueError("must be an IANA time zone name such as Europe/Berlin")
        return value


class ScheduleCreate(ScheduleUpdate):
    """The body of POST /api/v1/schedules."""

    runbook: Annotated[str, Field(min_length=1)] = Field(description="the name of the runbook to run")
    cron: Annotated[str, Field(json_schema_extra={"pattern": CRON})] = Field(  # type: ignore[assignment]
        description='five fields, or six with seconds last, such as "0 6 * * 1-5"'
    )
    timezone: Annotated[str, Field(json_schema_extra={"enum": sorted(ZONES)})] = "UTC"  # type: ignore[assignment]
    inputs: dict[str, Any] = Field(default_factory=dict, description="the runbook's inputs (its schema)")  # type: ignore[assignment]
    catch_up: CatchUp = "none"  # type: ignore[assignment]
    overlap: Overlap = "skip"  # type: ignore[assignment]
    active: bool = True  # type: ignore[assignment]


class Schedule(Response):
    id: str
    runbook: str
    origin: Literal["runbook", "api"] = Field(description="its runbook's file, or the API")
    cron: str
    timezone: str
    inputs: dict[str, Any] = Field(default_factory=dict, description="secrets masked")
    priority: Priority | None = None
    catch_up: CatchUp
    overlap: Overlap
    active: bool
    previous_trigger: Time | None = None
    next_trigger: Time | None = Field(description="null while paused")
    last_job_id: str | None = None
    created_by: str | None = None
    created_at: Time
    updated_at: Time
    url: str


class ScheduleList(Response):
    items: list[Schedule]
    total: int
