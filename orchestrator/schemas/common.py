"""Pieces every request and response model shares: times, priorities, tags, pages, the error body, and
the one adapter from a pydantic ValidationError to InvalidInput (SPEC's 422: a message per field)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
)

from orchestrator.errors import InvalidInput

M = TypeVar("M", bound=BaseModel)

Priority = Literal["low", "normal", "high"]
#: The highest `start` of any paged list.
MAX_START = 10_000_000
TIME_EXAMPLE = "2026-01-01T08:00:00Z"


class Request(BaseModel):
    """A request body or query: unknown fields are refused, each named."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Query(BaseModel):
    """A query string: parameters it does not know are ignored (a page's own, say)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Response(BaseModel):
    """An answer: what the API promises at least (answers may carry more)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, json_schema_serialization_defaults_required=True)


def iso(value: datetime | None) -> str | None:
    """A time as the API writes it: ISO 8601 in UTC with a `Z`."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: Any) -> datetime:
    """An ISO 8601 date and time (a `Z` or an offset; none is UTC) as an aware datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        raise ValueError(f"must be an ISO 8601 date and time, such as {TIME_EXAMPLE}")
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"must be an ISO 8601 date and time, such as {TIME_EXAMPLE}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def parse_day_or_time(value: Any) -> datetime:
    """A date (its midnight, UTC) or a date and time."""
    if isinstance(value, str) and len(value) == 10:
        try:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        except ValueError:
            pass
    try:
        return parse_time(value)
    except ValueError:
        raise ValueError("must be an ISO 8601 date, such as 2026-01-31 or 2026-01-31T08:00:00Z") from None


def end_of(value: Any) -> Any:
    """A bare date as the end of a range means through that day: the next midnight."""
    if isinstance(value, str) and len(value) == 10:
        return parse_day_or_time(value) + timedelta(days=1)
    return value


_TIME_SCHEMA = {"type": "string", "format": "date-time"}
#: A time sent by a caller.
Moment = Annotated[
    datetime, PlainValidator(parse_time), WithJsonSchema(_TIME_SCHEMA), PlainSerializer(iso, when_used="json")
]
#: A time answered by the API (from the database: naive ones are UTC).
Time = Annotated[datetime, WithJsonSchema(_TIME_SCHEMA), PlainSerializer(iso, when_used="json")]
#: A time the API answers that is already written as text.
Stamp = Annotated[str, WithJsonSchema(_TIME_SCHEMA)]
#: A date, or a date and time, in a query.
Day = Annotated[
    datetime,
    PlainValidator(parse_day_or_time),
    WithJsonSchema({"anyOf": [{"type": "string", "format": "date"}, _TIME_SCHEMA]}),
]

Tag = Annotated[str, Field(max_length=100)]
Tags = list[Tag]


def _json_size(value: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(value)) > 100_000:
        raise ValueError("must be an object of at most 100000 characters as JSON")
    return value


Data = Annotated[dict[str, Any], PlainValidator(lambda v: _json_size(_object(v))), WithJsonSchema({"type": "object"})]


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("must be an object")
    return value


class Error(BaseModel):
    """SPEC's error body: a sentence, and for 422 each bad field with what is wrong with it."""

    error: str
    fields: dict[str, str] | None = Field(default=None, description="each bad field (422), named by its path")
    status: str | None = Field(default=None, description="the job's status now (409)")
    allowed_actions: list[str] | None = Field(default=None, description="the actions allowed now (409)")


# -- from a ValidationError to InvalidInput ---------------------------------------------------------

_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "list_type": "must be a list",
    "string_pattern_mismatch": "is not in the expected form",
}


def _where(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


def _message(error: Any) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "literal_error" or kind == "enum":
        return f"must be one of {ctx.get('expected', '').replace(' or ', ', ').replace(chr(39), '')}"
    if kind in ("string_too_short", "string_too_long"):
        low, high = ctx.get("min_length"), ctx.get("max_length")
        return f"must be a string of {f'at most {high}' if high is not None else f'at least {low}'} characters"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        word = {"greater_than_equal": "at least", "less_than_equal": "at most"}.get(kind, kind.replace("_", " "))
        bound = next(iter(ctx.values()), "")
        return f"must be {word} {bound}"
    if kind in ("too_long", "too_short"):
        return f"must have at most {ctx.get('max_length')} items" if kind == "too_long" else "has too few items"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return _MESSAGES.get(kind) or error["msg"][:1].lower() + error["msg"][1:]


def fields_of(exc: ValidationError) -> dict[str, str]:
    """Each bad field by its path (`records[0].status`, `data.rerun_of`) with what is wrong with it,
    never the value it had (it may be a secret). The first problem of a field is the one named."""
    found: dict[str, str] = {}
    for error in exc.errors(include_input=False, include_url=False):
        loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        where = _where(loc)
        if "at" in (error.get("ctx") or {}):  # a check of a whole object that names the part at fault
            where = f"{where}.{error['ctx']['at']}" if loc else error["ctx"]["at"]
        found.setdefault(where, _message(error))
    return found


def validated(model: type[M], data: Any, *, context: dict[str, Any] | None = None) -> M:
    """`data` as `model`, or InvalidInput naming every bad field (the 422 of SPEC section 6)."""
    if not isinstance(data, dict):
        raise InvalidInput({"body": "must be a JSON object"})
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise InvalidInput(fields_of(exc)) from None


def query_of(model: type[M], params: Any) -> M:
    """Query parameters as `model`. An empty one (`?limit=`, as HTML forms send them) is not given; one
    given twice counts once (its last value)."""
    return validated(model, {k: v for k, v in params.items() if v != ""})
