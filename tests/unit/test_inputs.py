"""Job inputs are validated against the runbook's typed inputs; every bad field is named at once."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.errors import InvalidInput
from orchestrator.inputs import MASK, split_secrets, validate
from orchestrator.runbooks.schema import InputSpec


def specs(**fields: dict[str, Any]) -> dict[str, InputSpec]:
    return {name: InputSpec.model_validate(spec) for name, spec in fields.items()}


def bad(spec: dict[str, InputSpec], given: Any) -> dict[str, str]:
    with pytest.raises(InvalidInput) as caught:
        validate(spec, given)
    assert caught.value.status_code == 422
    return caught.value.fields


@pytest.mark.parametrize(
    ("kind", "given", "expected"),
    [
        ("string", "hello", "hello"),
        ("string", 12, "12"),
        ("integer", 7, 7),
        ("integer", "7", 7),
        ("integer", 7.0, 7),
        ("number", 2.5, 2.5),
        ("number", "2.5", 2.5),
        ("number", "3", 3),
        ("boolean", True, True),
        ("boolean", "false", False),
        ("boolean", "yes", True),
        ("records", [{"id": 1}], [{"id": 1}]),
        ("records", '[{"id": 1}]', [{"id": 1}]),
        (
            "file",
            {"filename": "a.txt", "data_base64": "aGk="},
            {"filename": "a.txt", "content_type": None, "content": b"hi"},
        ),
    ],
)
def test_each_type_accepts_its_values(kind: str, given: Any, expected: Any) -> None:
    result = validate(specs(x={"type": kind}), {"x": given})
    assert result == {"x": expected}
    assert type(result["x"]) is type(expected)


@pytest.mark.parametrize(
    ("kind", "given"),
    [
        ("string", ["a"]),
        ("string", True),
        ("integer", "seven"),
        ("integer", 7.5),
        ("integer", True),
        ("number", "many"),
        ("number", "nan"),
        ("boolean", "perhaps"),
        ("boolean", 2),
        ("records", [1, 2]),
        ("records", "not json"),
        ("records", {"id": 1}),
        ("file", "a.txt"),
    ],
)
def test_each_type_refuses_other_values(kind: str, given: Any) -> None:
    fields = bad(specs(x={"type": kind}), {"x": given})
    assert list(fields) == ["x"]
    assert fields["x"]


def test_required_inputs_must_be_given() -> None:
    spec = specs(who={"type": "string", "required": True})
    assert bad(spec, {}) == {"who": "is required"}
    assert bad(spec, {"who": ""}) == {"who": "is required"}
    assert bad(spec, None) == {"who": "is required"}
    assert validate(spec, {"who": "me"}) == {"who": "me"}


def test_defaults_fill_what_is_not_given_and_undeclared_defaults_are_none() -> None:
    spec = specs(
        mode={"type": "string", "default": "fast"},
        n={"type": "integer", "default": 2},
        note={"type": "string"},
        must={"type": "string", "required": True, "default": "x"},
    )
    assert validate(spec, {}) == {"mode": "fast", "n": 2, "note": None, "must": "x"}
    assert validate(spec, {"mode": "slow", "n": "5"}) == {"mode": "slow", "n": 5, "note": None, "must": "x"}


def test_enum() -> None:
    spec = specs(mode={"type": "string", "enum": ["fast", "careful"]})
    assert validate(spec, {"mode": "careful"}) == {"mode": "careful"}
    message = bad(spec, {"mode": "reckless"})["mode"]
    assert "fast" in message and "careful" in message


def test_minimum_and_maximum() -> None:
    spec = specs(n={"type": "number", "minimum": 0, "maximum": 10.5})
    assert validate(spec, {"n": 0}) == {"n": 0}
    assert validate(spec, {"n": 10.5}) == {"n": 10.5}
    assert "at least 0" in bad(spec, {"n": -1})["n"]
    assert "at most 10.5" in bad(spec, {"n": 11})["n"]


def test_pattern_must_match_the_whole_value() -> None:
    spec = specs(code={"type": "string", "pattern": "[A-Z]{3}-[0-9]+"})
    assert validate(spec, {"code": "ABC-12"}) == {"code": "ABC-12"}
    assert "pattern" in bad(spec, {"code": "xABC-12"})["code"]
    assert "pattern" in bad(spec, {"code": "ABC-12x"})["code"]


def test_an_unknown_input_is_named() -> None:
    fields = bad(specs(a={"type": "string"}), {"a": "x", "b": "y"})
    assert fields == {"b": "is not an input of this runbook"}


def test_inputs_must_be_an_object() -> None:
    assert "inputs" in bad(specs(a={"type": "string"}), ["a"])


def test_every_bad_field_is_named_at_once() -> None:
    spec = specs(
        who={"type": "string", "required": True},
        n={"type": "integer", "minimum": 1},
        mode={"type": "string", "enum": ["a", "b"]},
        code={"type": "string", "pattern": "[0-9]+"},
        ok={"type": "string"},
    )
    with pytest.raises(InvalidInput) as caught:
        validate(spec, {"n": 0, "mode": "c", "code": "x", "ok": "fine", "extra": 1})
    assert set(caught.value.fields) == {"who", "n", "mode", "code", "extra"}
    for name in ("who", "n", "mode", "code", "extra"):
        assert name in caught.value.message


def test_secret_inputs_are_split_out_and_masked() -> None:
    spec = specs(
        user={"type": "string"}, password={"type": "string", "secret": True}, pin={"type": "integer", "secret": True}
    )
    clean = validate(spec, {"user": "ada", "password": "hunter2", "pin": "1234"})
    public, secret = split_secrets(spec, clean)
    assert public == {"user": "ada", "password": MASK, "pin": MASK}
    assert secret == {"password": "hunter2", "pin": 1234}
    assert "hunter2" not in repr(public)
