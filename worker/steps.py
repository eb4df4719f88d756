"""A step as a run sees it: its row, its templates rendered into its action's model, the truth of its
`when`, and how it ended."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from orchestrator import templating
from orchestrator.db.tables import utcnow
from orchestrator.errors import StepError
from orchestrator.runbooks.steps import BASE_FIELDS, StepBase
from orchestrator.states import StepStatus

#: The fields every step has that may hold templates (`name` is also the screenshot action's file name).
RENDERED_BASE = ("timeout", "retries", "name")


@dataclass
class StepOutcome:
    status: StepStatus
    error: str | None = None
    #: A rejected approval: the job ends, even where continue_on_error or a loop would go on.
    refused: bool = False

    def ends_job(self, step: StepBase) -> bool:
        return self.status is StepStatus.FAILED and (self.refused or not step.continue_on_error)


def step_row(step: StepBase, attempt: int) -> dict[str, Any]:
    """The row of a step that starts now (the step UPDATE's parameters, and its event's)."""
    return {
        "step_id": step.id,
        "name": step.name,
        "action": step.action,
        "status": StepStatus.RUNNING.value,
        "started_at": utcnow(),
        "finished_at": None,
        "duration_s": None,
        "retries": 0,
        "attempt": attempt,
        "captured": None,
        "error": None,
        "diagnostics": None,
    }


def render_step(step: StepBase, scope: dict[str, Any]) -> StepBase:
    """Render the step's templates and validate the result against the action's model.
    A step without templates is already what it renders to."""
    if step.is_static():
        return step
    raw = step.model_dump(by_alias=True, exclude={"when", *step.lazy})
    lazy = {name: getattr(step, name) for name in step.lazy}
    rendered = templating.render({k: v for k, v in raw.items() if k not in BASE_FIELDS or k in RENDERED_BASE}, scope)
    base = {k: v for k, v in raw.items() if k in BASE_FIELDS and k not in RENDERED_BASE}
    try:
        return type(step).model_validate({**base, **rendered, **lazy})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][:1])) or 'step'}: {e['msg']}" for e in exc.errors()[:3])
        raise StepError(f"After templating, the step is not valid: {problems}.") from None


def truthy(value: Any) -> bool:
    """A rendered `when`: false, no, 0, off, none and the empty string are false."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "no", "0", "off", "none")
    return bool(value)


def first_line(exc: BaseException) -> str:
    """An error as one line for a person."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
