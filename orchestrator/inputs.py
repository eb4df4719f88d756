"""Validate job inputs against a runbook's typed inputs; every bad field is named."""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import math
import re
from typing import Any

from orchestrator.config import CAPS
from orchestrator.errors import InvalidInput
from orchestrator.runbooks.schema import InputSpec

MASK = "********"


#: Records in one `records` input, and that input's size as JSON: ORCH_MAX_RECORDS and
#: ORCH_MAX_RECORDS_BYTES (their defaults here; callers pass the settings').
MAX_RECORDS = CAPS["max_records"][1]
MAX_RECORDS_BYTES = CAPS["max_records_bytes"][1]


def validate(
    specs: dict[str, InputSpec],
    given: Any,
    *,
    max_records: int = MAX_RECORDS,
    max_records_bytes: int = MAX_RECORDS_BYTES,
) -> dict[str, Any]:
    """The clean inputs (defaults applied, types coerced from strings), or InvalidInput naming each field.
    A `records` input holds at most `max_records` records of at most `max_records_bytes` as JSON."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise InvalidInput({"inputs": "must be an object of input names to values"})
    errors: dict[str, str] = {name: "is not an input of this runbook" for name in given if name not in specs}
    clean: dict[str, Any] = {}
    for name, spec in specs.items():
        value = given.get(name)
        if value is None or value == "":
            if spec.required and spec.default is None:
                errors[name] = "is required"
            else:
                clean[name] = spec.default  # declared inputs always exist in templates, None when not given
            continue
        try:
            clean[name] = _check(spec, value)
            if spec.type == "records":
                _within(clean[name], max_records, max_records_bytes)
        except ValueError as exc:
            errors[name] = str(exc)
    if errors:
        raise InvalidInput(errors)
    return clean


def _check(spec: InputSpec, value: Any) -> Any:
    value = _COERCE[spec.type](value)
    if spec.enum is not None and value not in spec.enum:
        raise ValueError(f"must be one of {', '.join(map(str, spec.enum))}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if spec.minimum is not None and value < spec.minimum:
            raise ValueError(f"must be at least {_num(spec.minimum)}")
        if spec.maximum is not None and value > spec.maximum:
            raise ValueError(f"must be at most {_num(spec.maximum)}")
    if isinstance(value, str) and spec.pattern and not re.fullmatch(spec.pattern, value):
        raise ValueError(f"must match the pattern {spec.pattern} (the whole value)")
    return value


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _string(value: Any) -> str:
    if isinstance(value, str):
        if len(value) > 100_000:
            raise ValueError("is longer than 100000 characters")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a string")
    return str(value)


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d{1,18}\s*", value):
        return int(value)
    raise ValueError("must be an integer")


def _number(value: Any) -> int | float:
    if isinstance(value, bool):
        raise ValueError("must be a number")
    if isinstance(value, int | float) and math.isfinite(value):
        return value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return int(number) if number.is_integer() and "." not in value else number
    raise ValueError("must be a number")


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "yes", "1", "on", "false", "no", "0", "off"}:
        return value.lower() in {"true", "yes", "1", "on"}
    raise ValueError("must be true or false")


def _records(value: Any) -> list[dict[str, Any]]:
    """A list of objects: JSON, or an uploaded CSV (a header row, then one record a row) or JSON file."""
    if isinstance(value, dict) and isinstance(value.get("content"), bytes):
        value = _records_file(str(value.get("filename") or ""), value["content"])
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError("must be a JSON list of objects") from None
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ValueError("must be a list of objects")
    return value


def _within(records: list[dict[str, Any]], count: int, size: int) -> None:
    """Refuse more records than `count`, or more than `size` bytes of them as JSON (as they are stored)."""
    if len(records) > count:
        raise ValueError(f"has {len(records)} records; at most {count} records are allowed (ORCH_MAX_RECORDS)")
    if len(json.dumps(records, default=str)) > size:
        raise ValueError(f"is larger than {size} bytes as JSON, the most allowed (ORCH_MAX_RECORDS_BYTES)")


MAX_FILE_BYTES = 10 * 1024 * 1024


def _records_file(filename: str, content: bytes) -> Any:
    if len(content) > MAX_FILE_BYTES:
        raise ValueError(f"is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{filename or 'the file'} is not UTF-8 text") from None
    if filename.lower().endswith(".json") or text.lstrip().startswith("["):
        return text  # parsed as JSON below
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise ValueError(f"{filename or 'the CSV file'} has no header row")
    header = [cell.strip() for cell in rows[0]]
    if len(set(header)) != len(header) or "" in header:
        raise ValueError(f"{filename or 'the CSV file'} line 1: every column needs a different, non-empty name")
    records = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        if len(row) != len(header):
            raise ValueError(
                f"{filename or 'the CSV file'} line {number}: {len(row)} cells where the header has {len(header)}"
            )
        records.append(dict(zip(header, row, strict=True)))
    return records


def _file(value: Any) -> Any:
    """A file sent with the job: uploaded (multipart), or in JSON as {"filename", "content_type"?,
    "data_base64"}; stored by jobs.create."""
    if not isinstance(value, dict) or not isinstance(value.get("filename"), str) or not value["filename"].strip():
        raise ValueError('must be a file: {"filename": ..., "data_base64": ...}')
    if not isinstance(value.get("content_type") or "", str):
        raise ValueError("content_type must be a string, such as text/csv")
    if isinstance(value.get("content"), bytes):
        content = value["content"]
    elif not isinstance(value.get("data_base64", ""), str):
        raise ValueError("data_base64 must be a string of base64")
    else:
        try:
            content = base64.b64decode(str(value.get("data_base64", "")), validate=True)
        except (ValueError, binascii.Error):
            raise ValueError("data_base64 is not valid base64") from None
    if len(content) > MAX_FILE_BYTES:
        raise ValueError(f"is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    return {"filename": value["filename"][:200], "content_type": value.get("content_type"), "content": content}


_COERCE = {
    "string": _string,
    "integer": _integer,
    "number": _number,
    "boolean": _boolean,
    "records": _records,
    "file": _file,
}


def split_secrets(specs: dict[str, InputSpec], clean: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(inputs safe to store and show, secret values to encrypt)."""
    public = {k: (MASK if specs.get(k) and specs[k].secret else v) for k, v in clean.items()}
    secret = {k: v for k, v in clean.items() if specs.get(k) and specs[k].secret}
    return public, secret
