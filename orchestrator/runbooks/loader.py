"""Read runbook YAML into a validated Runbook, or report every problem as FILE:LINE: message."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orchestrator import templating
from orchestrator.errors import RunbookError
from orchestrator.runbooks.schema import Runbook

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class RunbookInvalid(RunbookError):
    """The runbook file is not valid."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems), problems=[str(p) for p in problems])


def content_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def load_file(path: Path) -> Runbook:
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RunbookInvalid([Problem(str(path), 1, f"cannot read the file: {exc}")]) from exc
    return parse(source, str(path), expected_name=path.stem)


def parse(source: str, file: str = "<runbook>", expected_name: str | None = None) -> Runbook:
    data, lines = _compose(source, file)
    if not isinstance(data, dict):
        raise RunbookInvalid([Problem(file, 1, "a runbook is a mapping with name and steps")])
    problems = _template_problems(data, lines, file)
    try:
        runbook = Runbook.model_validate(data)
    except ValidationError as exc:
        problems = _validation_problems(exc, data, lines, file) + problems
        raise RunbookInvalid(sorted(problems, key=lambda p: p.line)) from None
    problems += _duplicate_ids(runbook, data, lines, file)
    if expected_name is not None and runbook.name != expected_name:
        problems.append(Problem(file, lines.get(("name",), 1), f"name {runbook.name!r} must match the file name"))
    if problems:
        raise RunbookInvalid(sorted(problems, key=lambda p: p.line))
    return runbook


def _compose(source: str, file: str) -> tuple[Any, dict[Path_, int]]:
    try:
        node = yaml.compose(source, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise RunbookInvalid([Problem(file, line, f"YAML error: {exc.problem or exc.context}")]) from None
    except yaml.YAMLError as exc:
        raise RunbookInvalid([Problem(file, 1, f"YAML error: {exc}")]) from None
    if node is None:
        raise RunbookInvalid([Problem(file, 1, "the file is empty")])
    lines: dict[Path_, int] = {}
    try:
        data = _construct(node, (), lines)
    except (yaml.YAMLError, ValueError) as exc:
        raise RunbookInvalid([Problem(file, node.start_mark.line + 1, f"YAML error: {exc}")]) from None
    return data, lines


def _construct(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in result:
                raise ValueError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
            lines[(*path, key)] = key_node.start_mark.line + 1
            result[key] = _construct(value_node, (*path, key), lines)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*path, i), lines) for i, item in enumerate(node.value)]
    loader = yaml.SafeLoader("")
    return loader.construct_object(node, deep=True)


def _locate(loc: tuple[Any, ...], data: Any) -> Path_:
    """Keep the parts of a pydantic error location that exist in the document."""
    path: list[str | int] = []
    for part in loc:
        if part == "as_":
            part = "as"
        inside_list = isinstance(data, list) and isinstance(part, int) and part < len(data)
        if (isinstance(data, dict) and part in data) or inside_list:
            data = data[part]
        elif part in _UNION_TAGS or not (isinstance(part, str) and part.isidentifier()):
            continue  # a union member's name (the action, "constrained-float"), not a place in the file
        else:
            path.append(part)  # a missing or unknown field: report it by name, at its mapping
            break
        path.append(part)
    return tuple(path)


_UNION_TAGS = {
    "goto",
    "click",
    "fill",
    "press",
    "select",
    "check",
    "uncheck",
    "wait_for",
    "extract",
    "assert",
    "screenshot",
    "approval",
    "export",
    "download",
    "upload",
    "run_runbook",
    "set",
    "sleep",
    "for_each",
    "str",
    "int",
    "float",
    "bool",
    "list",
    "dict",
}


def _line(path: Path_, lines: dict[Path_, int]) -> int:
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return 1


def _validation_problems(exc: ValidationError, data: Any, lines: dict[Path_, int], file: str) -> list[Problem]:
    seen: dict[Path_, Problem] = {}
    for error in exc.errors():
        path = _locate(error["loc"], data)
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            path = (*path, "action")
        if path in seen:
            continue
        where = ".".join(str(p) for p in path) or "runbook"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "is required"
        elif error["type"] == "union_tag_invalid":
            message = f"unknown action {error['ctx']['tag']!r}; use one of {error['ctx']['expected_tags']}"
        elif error["type"] == "union_tag_not_found":
            message = "is required"
        elif error["type"] == "extra_forbidden":
            message = "is not a known field"
        seen[path] = Problem(file, _line(path, lines), f"{where}: {message}")
    return list(seen.values())


def _template_problems(data: Any, lines: dict[Path_, int], file: str, path: Path_ = ()) -> list[Problem]:
    if isinstance(data, str):
        error = templating.check(data)
        where = ".".join(str(p) for p in path)
        return [Problem(file, _line(path, lines), f"{where}: {error}")] if error else []
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    return [p for key, value in items for p in _template_problems(value, lines, file, (*path, key))]


def _duplicate_ids(runbook: Runbook, data: dict[str, Any], lines: dict[Path_, int], file: str) -> list[Problem]:
    seen: set[str] = set()
    problems = []
    for step in runbook.all_steps():
        if step.id in seen:
            problems.append(Problem(file, _find_id_line(data, step.id, lines), f"step id {step.id!r} is used twice"))
        seen.add(step.id)
    return problems


def _find_id_line(data: dict[str, Any], step_id: str, lines: dict[Path_, int]) -> int:
    found = [path for path in lines if path and path[-1] == "id" and _get(data, path) == step_id]
    return lines[found[-1]] if found else 1


def _get(data: Any, path: Path_) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data
