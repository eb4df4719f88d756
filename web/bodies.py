"""Request bodies as the models in orchestrator.schemas read them: strict JSON, and a job sent as a form
with files (multipart/form-data)."""

from __future__ import annotations

import json
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request

from orchestrator.errors import InvalidInput, OrchestratorError
from orchestrator.schemas.jobs import JobBody


async def json_body(request: Request) -> Any:
    """The request's JSON: strict (no NaN or Infinity, valid UTF-8 without lone surrogates, nesting
    Python can handle), so nothing that cannot be stored gets any further. No body is `{}`."""
    body = await request.body()
    if not body.strip():
        return {}
    try:
        value = json.loads(body, parse_constant=_no_constant, parse_float=_finite)
        json.dumps(value, ensure_ascii=False).encode("utf-8")  # a lone surrogate cannot be stored
    except RecursionError:
        raise OrchestratorError("The request body is nested too deeply.") from None
    except UnicodeError as exc:
        raise OrchestratorError(f"The request body is not valid UTF-8 text: {getattr(exc, 'reason', exc)}.") from None
    except ValueError as exc:
        raise OrchestratorError(f"The request body is not valid JSON: {exc}.") from None
    return value


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("multipart/form-data")


def _text_fields() -> set[str]:
    """The job body's fields a form sends as plain text; the others (lists, objects, booleans) as JSON."""
    found = set()
    for name, schema in JobBody.model_json_schema()["properties"].items():
        kinds = {choice.get("type") for choice in schema.get("anyOf", [schema])}
        if kinds - {"null"} == {"string"}:
            found.add(name)
    return found


#: The job body's own fields (not inputs) in a form, and which of them are plain text.
FORM_FIELDS = set(JobBody.model_fields) - {"inputs"}
TEXT_FIELDS = _text_fields()
TRUE_WORDS = ("true", "1", "yes", "on")


async def job_form(request: Request) -> dict[str, Any]:
    """A job sent as a form with files: `inputs` (JSON) and one field per input, files included; the
    job body's own fields by their names. An empty field is one not given, as forms send them."""
    body: dict[str, Any] = {}
    inputs: dict[str, Any] = {}
    async with request.form(max_files=20, max_fields=100) as form:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                inputs[name] = {"filename": value.filename or name, "content_type": value.content_type}
                inputs[name]["content"] = await value.read()
            elif name == "inputs":
                parsed = json_field(name, value) if value.strip() else {}
                if not isinstance(parsed, dict):
                    raise InvalidInput({"inputs": "must be a JSON object"})
                inputs = {**parsed, **inputs}
            elif name == "preview":
                body["preview"] = value.lower() in TRUE_WORDS
            elif name in FORM_FIELDS:
                if value != "":
                    body[name] = value if name in TEXT_FIELDS else json_field(name, value)
            else:
                inputs[name] = value
    body["inputs"] = inputs
    return body


def json_field(name: str, value: str) -> Any:
    try:
        return json.loads(value, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError):
        raise InvalidInput({name: "must be JSON"}) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is too large a number")
    return value
