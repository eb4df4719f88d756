"""A runbook's typed inputs as a JSON Schema: what orchestrator.inputs.validate takes, so that a client
(or a fuzzer) can send valid jobs. Served at GET /api/v1/runbooks/{name}/schema and in /openapi.json
for POST /api/v1/runbooks/{name}/jobs; the run form is built from it.

Each input's schema takes exactly what validation takes where JSON Schema can say it: an input that is
not required (or has a default) may also be null or "" (not given), a number or a boolean may also come
as text the way forms send it, a string may also come as a number."""

from __future__ import annotations

from typing import Any

from orchestrator.runbooks.schema import InputSpec

#: The JSON Schema dialect of the document GET /api/v1/runbooks/{name}/schema answers.
DIALECT = "https://json-schema.org/draft/2020-12/schema"
MAX_STRING = 100_000
#: How text is read as a boolean (orchestrator.inputs._boolean), in any letter case.
TRUE_WORDS = ("true", "yes", "1", "on")
FALSE_WORDS = ("false", "no", "0", "off")
BASE64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
#: Integer ranges up to this many values also list their values as text.
LISTED_TEXT = 200


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _bounds(spec: InputSpec) -> dict[str, Any]:
    bounds: dict[str, Any] = {}
    if spec.minimum is not None:
        bounds["minimum"] = _number(spec.minimum)
    if spec.maximum is not None:
        bounds["maximum"] = _number(spec.maximum)
    return bounds


def _string(spec: InputSpec) -> list[dict[str, Any]]:
    text: dict[str, Any] = {"type": "string", "maxLength": MAX_STRING}
    if spec.required and spec.default is None:
        text["minLength"] = 1
    if spec.pattern:
        text["pattern"] = f"^(?:{spec.pattern})$"
    if spec.enum is not None:
        return [{"type": "string", "enum": [v for v in spec.enum if isinstance(v, str)]}]
    return [text] if spec.pattern else [text, {"type": "number"}]


def _integer(spec: InputSpec) -> list[dict[str, Any]]:
    if spec.enum is not None:
        values = [v for v in spec.enum if isinstance(v, int) and not isinstance(v, bool)]
        return [{"type": "integer", "enum": values}, {"type": "string", "enum": [str(v) for v in values]}]
    typed = {"type": "integer", **_bounds(spec)}
    low = int(-(-spec.minimum // 1)) if spec.minimum is not None else None
    high = int(spec.maximum // 1) if spec.maximum is not None else None
    if low is not None and high is not None and 0 <= high - low < LISTED_TEXT:
        return [typed, {"type": "string", "enum": [str(n) for n in range(low, high + 1)]}]
    text = "^0?[1-9][0-9]{0,16}$" if low == 1 and high is None else _text("[0-9]{1,18}", low, high)
    return [typed, {"type": "string", "pattern": text}] if text else [typed]


def _text(digits: str, low: float | None, high: float | None) -> str | None:
    """A pattern of numbers as text within [low, high] where that is simple to say (no bound, or at
    least 0); numbers within other bounds are taken as JSON numbers only."""
    if high is not None or (low is not None and low > 0):
        return None
    return f"^{digits}$" if low is not None else f"^-?{digits}$"


def _decimal(spec: InputSpec) -> list[dict[str, Any]]:
    typed = {"type": "number", **_bounds(spec)}
    text = _text(r"[0-9]{1,15}(?:\.[0-9]{1,15})?", spec.minimum, spec.maximum)
    return [typed, {"type": "string", "pattern": text}] if text else [typed]


def _boolean(spec: InputSpec) -> list[dict[str, Any]]:
    words = [form for word in (*TRUE_WORDS, *FALSE_WORDS) for form in {word, word.upper(), word.capitalize()}]
    return [{"type": "boolean"}, {"type": "string", "enum": sorted(words)}]


def _records(spec: InputSpec, max_records: int) -> list[dict[str, Any]]:
    return [{"type": "array", "items": {"type": "object"}, "maxItems": max_records}]


def _file(spec: InputSpec) -> list[dict[str, Any]]:
    return [
        {
            "type": "object",
            "description": "a file in JSON; or a file part of a multipart/form-data body",
            "required": ["filename"],
            "properties": {
                "filename": {"type": "string", "pattern": r"\S"},
                "content_type": {"type": "string"},
                "data_base64": {"type": "string", "pattern": BASE64, "maxLength": 14_000_000},
            },
        }
    ]


def input_schema(spec: InputSpec, max_records: int) -> dict[str, Any]:
    """The JSON Schema of one input."""
    kinds = {
        "string": _string,
        "integer": _integer,
        "number": _decimal,
        "boolean": _boolean,
        "file": _file,
    }
    if spec.secret:  # nothing of a secret's allowed values is published: its enum or pattern neither
        spec = spec.model_copy(update={"enum": None, "pattern": None})
    choices = _records(spec, max_records) if spec.type == "records" else kinds[spec.type](spec)
    if not (spec.required and spec.default is None):  # null or "" is "not given": the default
        choices = [*choices, {"type": "null"}, {"type": "string", "maxLength": 0}]
    schema: dict[str, Any] = {"anyOf": choices} if len(choices) > 1 else choices[0]
    schema["x-input-type"] = spec.type
    for key in ("title", "description"):
        if getattr(spec, key):
            schema[key] = getattr(spec, key)
    if spec.secret:
        schema["writeOnly"] = True
    elif spec.default is not None:
        schema["default"] = spec.default
    return schema


def inputs_schema(specs: dict[str, InputSpec], max_records: int, title: str | None = None) -> dict[str, Any]:
    """The JSON Schema of a runbook's `inputs` object."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {name: input_schema(spec, max_records) for name, spec in specs.items()},
        "additionalProperties": False,
    }
    required = [name for name, spec in specs.items() if spec.required and spec.default is None]
    if required:
        schema["required"] = required
    if title:
        schema["title"] = title
    return schema
