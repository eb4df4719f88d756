"""The job view's fast path (orchestrator/views.py `_fields_of`) shows a step exactly as its response model does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator.schemas.jobs import Step
from orchestrator.states import StepStatus
from orchestrator.views import step_view

BASE: dict[str, Any] = {"step_id": "open", "job_id": "j-1", "name": None, "action": "goto", "status": "success"}
ROWS = [
    BASE,
    {
        **BASE,
        "name": "Open <the> page",
        "status": StepStatus.FAILED,
        "started_at": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        "finished_at": datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC) + timedelta(microseconds=1),
        "duration_s": 0.25,
        "retries": 2,
        "attempt": 3,
        "captured": {"a": [1, None, {"b": "ü"}]},
        "error": "Timeout",
        "diagnostics": {"selectors": ["#a", "#b"], "screenshot_id": "shot-1", "url": "http://x"},
        "position": 4,  # a column the API does not show
    },
]


@pytest.mark.parametrize("row", ROWS)
def test_a_step_is_shown_as_its_model_shows_it(row: dict[str, Any]) -> None:
    shown = step_view(row, "/api/v1/jobs/j-1/artifacts/shot-0")
    raw = {**row, "id": row["step_id"], "screenshot_url": "/api/v1/jobs/j-1/artifacts/shot-0"}
    raw["diagnostics"] = shown["diagnostics"]  # the diagnostics' own screenshot URL is the view's work
    by_model = Step.model_validate({k: v for k, v in raw.items() if k in Step.model_fields}).model_dump(mode="json")
    assert shown == by_model
    assert list(shown) == list(Step.model_fields)
