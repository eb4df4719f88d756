"""Sandboxed Jinja2: undefined names are errors; a field that is one {{ expression }} keeps its type."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from orchestrator.errors import TemplateError
from orchestrator.states import JobStatus, RecordStatus, StepStatus

_SINGLE = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}|\{\{).)*)\}\}\s*$", re.DOTALL)


@lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
    env.globals.update(JobStatus=JobStatus, StepStatus=StepStatus, RecordStatus=RecordStatus)
    return env


def is_template(value: str) -> bool:
    return "{{" in value or "{%" in value


def check(value: str) -> str | None:
    """The syntax error in a template string, or None when it parses."""
    if not is_template(value):
        return None
    try:
        match = _SINGLE.match(value)
        if match:
            environment().compile_expression(match["expr"])
        else:
            environment().parse(value)
    except jinja2.TemplateSyntaxError as exc:
        return f"template syntax error: {exc.message}"
    return None


@lru_cache(maxsize=4096)
def _compiled(value: str) -> Any:
    match = _SINGLE.match(value)
    if match:
        return ("expr", environment().compile_expression(match["expr"], undefined_to_none=False))
    return ("text", environment().from_string(value))


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render a value (string, list or mapping, recursively) against the context."""
    if isinstance(value, str):
        return _render_str(value, context)
    if isinstance(value, list):
        return [render(item, context) for item in value]
    if isinstance(value, dict):
        return {key: render(item, context) for key, item in value.items()}
    return value


def _render_str(value: str, context: Mapping[str, Any]) -> Any:
    if not is_template(value):
        return value
    try:
        kind, compiled = _compiled(value)
        result = compiled(**context) if kind == "expr" else compiled.render(**context)
        if isinstance(result, jinja2.Undefined):
            str(result)  # raises UndefinedError with the name
        return result
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"Template {value.strip()!r} failed: {exc.message}.") from exc
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"Template {value.strip()!r} has a syntax error: {exc.message}.") from exc
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"Template {value.strip()!r} is not allowed: {exc}.") from exc
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
        raise TemplateError(f"Template {value.strip()!r} failed: {exc}.") from exc
