"""The runbook loader reports every problem as FILE:LINE: message and never half-loads a file."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from orchestrator.runbooks.loader import RunbookInvalid, load_file, parse
from orchestrator.runbooks.steps import ForEach

FILE = "runbooks/sample.yaml"


def problems(source: str, expected_name: str | None = "sample") -> list[str]:
    with pytest.raises(RunbookInvalid) as caught:
        parse(textwrap.dedent(source).lstrip(), FILE, expected_name=expected_name)
    found = [str(p) for p in caught.value.problems]
    assert found, "a RunbookInvalid names at least one problem"
    for problem in found:
        assert re.match(rf"{re.escape(FILE)}:\d+: \S", problem), problem
    return found


def only(source: str, line: int, *words: str) -> str:
    found = problems(source)
    assert len(found) == 1, found
    [problem] = found
    assert problem.startswith(f"{FILE}:{line}: "), problem
    for word in words:
        assert word in problem, f"{word!r} not in {problem!r}"
    return problem


def test_a_valid_file_loads_with_default_step_ids() -> None:
    runbook = parse(
        textwrap.dedent("""
        name: sample
        title: A sample
        inputs:
          who: {type: string, default: world}
        steps:
          - action: goto
            url: "https://example.test/{{ inputs.who }}"
          - id: named
            action: set
            values: {a: 1}
          - action: for_each
            items: "{{ captured.rows }}"
            record_id: "{{ record.id }}"
            steps:
              - action: set
                values: {b: "{{ record.id }}"}
              - action: sleep
                seconds: 0
    """).lstrip(),
        FILE,
        expected_name="sample",
    )
    assert runbook.name == "sample"
    assert runbook.display_title == "A sample"
    assert [s.id for s in runbook.steps] == ["step-1", "named", "step-3"]
    loop = runbook.steps[2]
    assert isinstance(loop, ForEach)
    assert [s.id for s in loop.steps] == ["step-3.1", "step-3.2"]
    assert runbook.needs_browser


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[2] / "runbooks").glob("*.yaml")))
def test_the_shipped_runbooks_load(path: Path) -> None:
    runbook = load_file(path)
    assert runbook.name == path.stem
    assert runbook.steps


def test_a_yaml_syntax_error_names_its_line() -> None:
    only(
        """
        name: sample
        steps:
          - action: goto
            url: [unclosed
          - action: sleep
    """,
        5,
        "YAML",
    )


def test_an_unknown_action_names_the_action_line() -> None:
    only(
        """
        name: sample
        steps:
          - action: goto
            url: https://example.test
          - id: fly
            action: teleport
            to: mars
    """,
        6,
        "teleport",
    )


def test_a_missing_required_field_is_named() -> None:
    only(
        """
        name: sample
        steps:
          - action: set
            values: {a: 1}
          - action: goto
            timeout: 3
    """,
        5,
        "url",
        "required",
    )


def test_a_missing_action_is_named() -> None:
    only(
        """
        name: sample
        steps:
          - id: nothing
            url: https://example.test
    """,
        3,
        "action",
    )


def test_a_runbook_without_steps_is_refused() -> None:
    only(
        """
        name: sample
        title: empty
    """,
        1,
        "steps",
    )


def test_an_unknown_field_names_its_line() -> None:
    only(
        """
        name: sample
        steps:
          - action: goto
            url: https://example.test
            colour: blue
    """,
        5,
        "colour",
    )


def test_an_unknown_top_level_field_names_its_line() -> None:
    only(
        """
        name: sample
        stepz: []
        steps:
          - {action: sleep, seconds: 1}
    """,
        2,
        "stepz",
    )


def test_a_field_of_the_wrong_type_names_its_line() -> None:
    only(
        """
        name: sample
        steps:
          - action: sleep
            seconds: 1
          - action: extract
            selector: "#a"
            save_as: x
            all: sometimes
    """,
        8,
        "all",
    )


def test_bad_template_syntax_names_its_line() -> None:
    only(
        """
        name: sample
        steps:
          - action: goto
            url: https://example.test
          - action: fill
            selector: "#who"
            value: "{{ inputs.who "
    """,
        7,
        "template",
    )


def test_a_duplicate_step_id_names_the_second_one() -> None:
    only(
        """
        name: sample
        steps:
          - id: open
            action: goto
            url: https://example.test
          - id: open
            action: sleep
            seconds: 1
    """,
        6,
        "open",
    )


def test_a_name_that_does_not_match_the_file_is_refused() -> None:
    only(
        """
        # a comment first
        name: other-name
        steps:
          - {action: sleep, seconds: 1}
    """,
        2,
        "other-name",
    )


def test_a_bad_name_is_refused() -> None:
    with pytest.raises(RunbookInvalid) as caught:
        parse("name: Bad_Name\nsteps:\n  - {action: sleep, seconds: 1}\n", FILE)
    assert str(caught.value.problems[0]).startswith(f"{FILE}:1: ")


def test_every_problem_of_a_file_is_reported_at_once() -> None:
    found = problems("""
        name: sample
        steps:
          - action: goto
            url: https://example.test
            colour: blue
          - action: teleport
          - action: fill
            selector: "#a"
    """)
    lines = {int(p.split(":")[1]) for p in found}
    assert {5, 6, 7} <= lines, found


def test_load_file_reports_the_file_path(tmp_path: Path) -> None:
    path = tmp_path / "mismatch.yaml"
    path.write_text("name: sample\nsteps:\n  - {action: sleep, seconds: 1}\n")
    with pytest.raises(RunbookInvalid) as caught:
        load_file(path)
    [problem] = [str(p) for p in caught.value.problems]
    assert problem.startswith(f"{path}:1: ")
    assert "sample" in problem and "file name" in problem


@pytest.mark.parametrize(
    ("schedule", "words"),
    [
        ('{cron: "every morning"}', ("every morning", "not a cron expression")),
        ('{cron: "0 6 * * *", timezone: Mars/Base}', ("Mars/Base", "time zone")),
        ('{cron: "0 0 30 2 *"}', ("never fires",)),
        ('{cron: "0 6 * * *", overlap: queue}', ("overlap",)),
    ],
)
def test_a_bad_schedule_names_its_line(schedule: str, words: tuple[str, ...]) -> None:
    source = f"""
        name: sample
        schedule: {schedule}
        steps:
          - {{action: sleep, seconds: 1}}
    """
    only(source, 2, *words)
