"""Hostile runbook files: alias bombs, recursive aliases, deep nesting and unreadable files are each
refused as FILE:LINE: message, and nothing else escapes the loader."""

from __future__ import annotations

import re
import signal
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import pytest

from orchestrator.runbooks.loader import MAX_BYTES, MAX_DEPTH, RunbookInvalid, load_file, parse

FILE = "runbooks/hostile.yaml"

# Nine strings, each level nine aliases of the one before: 9**6 values once expanded, in 400 bytes.
BOMB = """
    name: hostile
    steps:
      - action: set
        values:
          a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]
          b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
          c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
          d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
          e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
          f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
"""


class Hung(BaseException):
    """Raised by `guard` (a BaseException, so the loader's own catch-all cannot swallow it)."""


@contextmanager
def guard(seconds: int = 60) -> Iterator[None]:
    """Fail a load that never ends instead of hanging the suite (a guard against a hang, not a speed check)."""

    def expired(signum: int, frame: FrameType | None) -> None:
        raise Hung(f"still loading after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def refused(source: str) -> str:
    """The one problem the loader reports for this source, checked to read FILE:LINE: message."""
    with guard(), pytest.raises(RunbookInvalid) as caught:
        parse(textwrap.dedent(source).lstrip(), FILE, expected_name="hostile")
    [problem] = [str(p) for p in caught.value.problems]
    assert re.match(rf"{re.escape(FILE)}:\d+: \S", problem), problem
    return problem


def test_an_alias_bomb_is_refused_at_the_alias_that_expands_it_too_far() -> None:
    problem = refused(BOMB)
    assert problem.startswith(f"{FILE}:9: "), problem  # the line of `e`, where the expansion passes the budget
    assert "alias" in problem and "use fewer aliases" in problem


@pytest.mark.parametrize(
    ("source", "line"),
    [
        (
            """
            name: hostile
            steps: &steps
              - action: set
                values: {again: *steps}
            """,
            4,
        ),
        (
            """
            name: hostile
            steps:
              - action: set
                values: &values
                  self: *values
            """,
            5,
        ),
        ("&root {name: hostile, steps: [{action: set, values: {root: *root}}]}", 1),
    ],
    ids=["sequence", "mapping", "root"],
)
def test_an_alias_inside_the_value_it_names_is_refused(source: str, line: int) -> None:
    problem = refused(source)
    assert problem.startswith(f"{FILE}:{line}: "), problem
    assert "cannot contain itself" in problem


def test_values_nested_too_deeply_are_refused() -> None:
    depth = 10 * MAX_DEPTH
    problem = refused(f"name: hostile\nsteps: [{{action: set, values: {{deep: {'[' * depth}{']' * depth}}}}}]\n")
    assert problem.startswith(f"{FILE}:2: ") and "nest deeper" in problem, problem


def test_a_chain_of_aliases_nesting_too_deeply_is_refused() -> None:
    chain = "\n".join(f"      l{i}: &l{i} [*l{i - 1}]" for i in range(1, 2 * MAX_DEPTH))
    source = f"name: hostile\nsteps:\n  - action: set\n    values:\n      l0: &l0 [x]\n{chain}\n"
    problem = refused(source)
    assert "aliases nest values deeper" in problem, problem


def test_a_runbook_that_uses_aliases_sparingly_still_loads() -> None:
    source = """
        name: hostile
        inputs:
          who: &text {type: string, default: world}
          whom: *text
        steps:
          - &hello {action: set, values: {greeting: "hello {{ inputs.who }}"}}
          - *hello
          - {action: set, values: {list: &list [1, 2, 3], again: *list}}
    """
    with guard():
        runbook = parse(textwrap.dedent(source).lstrip(), FILE, expected_name="hostile")
    assert [s.action for s in runbook.steps] == ["set", "set", "set"]
    assert runbook.inputs["whom"].default == "world"


def unreadable(folder: Path, kind: str) -> Path:
    """A runbook file that cannot be read as one, of this kind."""
    path = folder / f"{kind}.yaml"
    if kind == "bad-encoding":
        path.write_bytes("name: bad-encoding\ntitle: caf\xe9\n".encode("latin-1"))
    elif kind == "too-large":
        path.write_bytes(b"name: too-large\n" + b"#" * MAX_BYTES)
    elif kind == "a-directory":
        path.mkdir()
    elif kind == "a-broken-link":
        path.symlink_to(folder / "nowhere.yaml")
    return path


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("bad-encoding", "can't decode"),
        ("too-large", f"larger than {MAX_BYTES} bytes"),
        ("a-directory", "Is a directory"),
        ("a-broken-link", "No such file"),
    ],
)
def test_a_file_that_cannot_be_read_is_refused_with_its_name(tmp_path: Path, kind: str, words: str) -> None:
    path = unreadable(tmp_path, kind)
    with pytest.raises(RunbookInvalid) as caught:
        load_file(path)
    [problem] = [str(p) for p in caught.value.problems]
    assert problem.startswith(f"{path}:1: cannot read the file: "), problem
    assert words in problem, problem
