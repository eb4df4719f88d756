"""set and export: working with captured values."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from orchestrator.errors import StepError
from orchestrator.runbooks.steps import Export, SetValues
from worker.actions import ActionFn
from worker.context import StepContext


async def set_values(ctx: StepContext, step: SetValues) -> dict[str, Any] | None:
    ctx.captured.update(step.values)
    return dict(step.values)


async def export(ctx: StepContext, step: Export) -> dict[str, Any] | None:
    data = ctx.mask_value(step.data)  # secret inputs never reach a file, whatever captured them
    if step.format == "json":
        content = json.dumps(data, indent=2, ensure_ascii=False, default=str).encode()
        mime = "application/json"
    else:
        content = _csv(data).encode()
        mime = "text/csv"
    name = step.filename if step.filename.endswith(f".{step.format}") else f"{step.filename}.{step.format}"
    row = await ctx.save("export", name, content, mime)
    return {"export": row["name"], "rows": len(step.data) if isinstance(step.data, list) else 1}


def _csv(data: Any) -> str:
    """A list of objects (columns: every key, in order of first appearance), a list of lists, or one object."""
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise StepError("A CSV export needs `data` to be a list of objects or of lists.")
    out = io.StringIO()
    if all(isinstance(row, dict) for row in data):
        columns: dict[str, None] = {}
        for row in data:
            columns.update(dict.fromkeys(map(str, row)))
        writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows([{str(k): _cell(v) for k, v in row.items()} for row in data])
    elif all(isinstance(row, list | tuple) for row in data):
        csv.writer(out).writerows([[_cell(v) for v in row] for row in data])
    else:
        csv.writer(out).writerows([[_cell(v)] for v in data])
    return out.getvalue()


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, dict | list) else value


ACTIONS: list[ActionFn] = [set_values, export]
