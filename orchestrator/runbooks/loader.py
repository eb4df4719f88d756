"""Read runbook YAML into a validated Runbook, or report every problem as FILE:LINE: message."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orchestrator import templating
from orchestrator.errors import RunbookError
from orchestrator.runbooks.schema import Runbook

Path_ = tuple[str | int, ...]

MAX_BYTES = 1_000_000  # a runbook file larger than this is refused unread
MAX_NODES = 50_000  # values a runbook may expand to, an alias counted once for every value it stands for
MAX_DEPTH = 50  # levels values may nest, through aliases too

log = logging.getLogger(__name__)


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


def read(path: Path) -> str:
    """The file's text; a file that cannot be read as a runbook (a folder, unreadable, too large, not
    UTF-8) is a RunbookInvalid naming the file."""
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            raise ValueError(f"the file is larger than {MAX_BYTES} bytes; split it into smaller runbooks")
        return raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # as open() in text mode reads it
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise RunbookInvalid([Problem(str(path), 1, f"cannot read the file: {exc}")]) from None


def load_file(path: Path) -> Runbook:
    return parse(read(path), str(path), expected_name=path.stem)


def parse(source: str, file: str = "<runbook>", expected_name: str | None = None) -> Runbook:
    """The runbook, or RunbookInvalid with every problem found; nothing else escapes, whatever the text."""
    try:
        return _parse(source, file, expected_name)
    except RunbookInvalid:
        raise
    except RecursionError:
        raise RunbookInvalid([Problem(file, 1, "the runbook nests too deeply to load; flatten it")]) from None
    except MemoryError:
        raise RunbookInvalid([Problem(file, 1, "the runbook is too large to load; split it")]) from None
    except Exception as exc:  # a bug of ours must not stop the other runbooks from loading
        log.exception("could not load %s", file)
        problem = Problem(file, 1, f"cannot load the runbook ({type(exc).__name__}); check the file and the log")
        raise RunbookInvalid([problem]) from None


def _parse(source: str, file: str, expected_name: str | None) -> Runbook:
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


class BoundedLoader(yaml.SafeLoader):
    """A SafeLoader whose composer refuses what would blow up when the document is walked: more than
    MAX_NODES values once every alias is expanded (a "billion laughs" file), values nested deeper than
    MAX_DEPTH (through aliases too), and an alias inside the value it names. PyYAML has no such limit
    itself (yaml/pyyaml#235): its nodes share aliased values, and walking them expands every alias."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._expanded = 0  # values so far, every alias counted as the values it stands for
        self._open = 0  # collections being composed around the current event
        self._shape: dict[yaml.Node, tuple[int, int]] = {}  # a composed node: (values, levels) it expands to

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            return self._alias(parent, index, event)
        if self._open >= MAX_DEPTH:
            raise _refused(f"values nest deeper than {MAX_DEPTH} levels; flatten the runbook", event.start_mark)
        start = self._expanded
        self._grow(1, 1, event.start_mark)
        self._open += 1
        node = super().compose_node(parent, index)
        self._open -= 1
        assert node is not None
        children = _children(node)
        levels = 1 + max((self._shape[child][1] for child in children), default=0)
        if levels > MAX_DEPTH:
            raise _refused(f"aliases nest values deeper than {MAX_DEPTH} levels; write them out", node.start_mark)
        self._shape[node] = (self._expanded - start, levels)
        return node

    def _alias(self, parent: yaml.Node | None, index: int, event: yaml.AliasEvent) -> yaml.Node | None:
        target = self.anchors.get(event.anchor)
        if target is not None:  # an undefined alias is PyYAML's own error
            if target not in self._shape:
                message = f"alias *{event.anchor} is used inside the value it names; a value cannot contain itself"
                raise _refused(message, event.start_mark)
            values, levels = self._shape[target]
            self._grow(values, self._open + levels, event.start_mark)
        return super().compose_node(parent, index)

    def _grow(self, values: int, levels: int, mark: Any) -> None:
        self._expanded += values
        if self._expanded > MAX_NODES:
            message = f"aliases expand the runbook to more than {MAX_NODES} values; use fewer aliases"
            if values == 1:
                message = f"the runbook has more than {MAX_NODES} values; split it"
            raise _refused(message, mark)
        if levels > MAX_DEPTH:
            raise _refused(f"aliases nest values deeper than {MAX_DEPTH} levels; write them out", mark)


def _refused(problem: str, mark: Any) -> yaml.composer.ComposerError:
    return yaml.composer.ComposerError(None, None, problem, mark)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def compose(source: str) -> yaml.Node | None:
    """The document's node graph, through BoundedLoader; raises yaml.YAMLError."""
    loader = BoundedLoader(source)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def _compose(source: str, file: str) -> tuple[Any, dict[Path_, int]]:
    try:
        node = compose(source)
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
