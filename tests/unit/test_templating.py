"""Sandboxed Jinja2 templates: types kept for a single expression, strings otherwise, errors named."""

from __future__ import annotations

import pytest

from orchestrator.errors import TemplateError
from orchestrator.templating import check, render

CONTEXT = {
    "inputs": {"names": ["a", "b"], "count": 3, "price": 2.5, "flag": False, "mode": "fast"},
    "captured": {"row": {"id": 7, "name": "Ada"}, "rows": [{"n": 1}, {"n": 2}]},
    "job": {"id": "j1", "runbook": "demo", "version": 2},
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ inputs.names }}", ["a", "b"]),
        ("{{ inputs.count }}", 3),
        ("{{ inputs.count * 2 }}", 6),
        ("{{ inputs.price }}", 2.5),
        ("{{ inputs.flag }}", False),
        ("{{ captured.row }}", {"id": 7, "name": "Ada"}),
        ("{{ captured.rows | map(attribute='n') | list }}", [1, 2]),
        ("{{ {'a': inputs.count} }}", {"a": 3}),
        ("  {{ inputs.count }}  ", 3),
        ("{{ none }}", None),
    ],
)
def test_a_single_expression_keeps_its_type(template: str, expected: object) -> None:
    result = render(template, CONTEXT)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("n={{ inputs.count }}", "n=3"),
        ("{{ inputs.count }}{{ inputs.count }}", "33"),
        ("{{ job.runbook }} v{{ job.version }}", "demo v2"),
        ("{% if inputs.flag %}yes{% else %}no{% endif %}", "no"),
        ("{{ captured.row.name }} #{{ captured.row.id }}", "Ada #7"),
    ],
)
def test_mixed_text_renders_a_string(template: str, expected: str) -> None:
    assert render(template, CONTEXT) == expected


def test_values_without_templates_and_nested_structures() -> None:
    assert render("plain text", CONTEXT) == "plain text"
    assert render(42, CONTEXT) == 42
    assert render({"a": "{{ inputs.count }}", "b": ["{{ inputs.mode }}", "x{{ inputs.count }}"]}, CONTEXT) == {
        "a": 3,
        "b": ["fast", "x3"],
    }


@pytest.mark.parametrize(
    ("template", "name"),
    [
        ("{{ inputs.missing }}", "missing"),
        ("{{ nothing }}", "nothing"),
        ("hello {{ nobody }}", "nobody"),
        ("{{ captured.row.nope }}", "nope"),
        ("{{ captured.absent | length }}", "absent"),
    ],
)
def test_an_undefined_name_is_a_template_error_naming_it(template: str, name: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render(template, CONTEXT)
    assert name in caught.value.message
    assert "\n" not in caught.value.message


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "x {{ inputs.__class__ }}",
        "{{ captured.row.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ inputs.names.append('c') }}",
        "{{ captured.row.update({'id': 1}) }}",
    ],
)
def test_the_sandbox_blocks_internals_and_mutation(template: str) -> None:
    with pytest.raises(TemplateError):
        render(template, CONTEXT)
    assert CONTEXT["inputs"]["names"] == ["a", "b"]
    assert CONTEXT["captured"]["row"] == {"id": 7, "name": "Ada"}


def test_a_syntax_error_is_reported_by_check_and_by_render() -> None:
    assert check("{{ inputs.count ") is not None
    assert check("{% if %}x{% endif %}") is not None
    assert check("{{ inputs.count }}") is None
    assert check("no template") is None
    with pytest.raises(TemplateError):
        render("{{ inputs.count ", CONTEXT)


def test_errors_from_filters_become_template_errors() -> None:
    with pytest.raises(TemplateError):
        render("{{ 1 / 0 }}", CONTEXT)
    with pytest.raises(TemplateError):
        render("{{ inputs.mode | int + [] }}", CONTEXT)
