"""Secrets kept out of what a run writes: values as JSON data with every secret masked, and a whole
write (its ops' fields, its statements' parameters, its events) masked before it leaves the run."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from orchestrator.events import Pending
from orchestrator.masking import mask_value
from worker.committer import Statement


def jsonable(value: Any, secrets: frozenset[str]) -> Any:
    """`value` as JSON data, with every secret inside its strings replaced by ********. Strings only:
    replacing in the JSON text would corrupt it when a secret is short (a PIN "1" inside `{"a": 1}`)."""
    return mask_value(json.loads(json.dumps(value, default=str)), secrets)


def masked(
    secrets: frozenset[str], ops: tuple[Any, ...], statements: list[Statement], events: list[Pending]
) -> tuple[tuple[Any, ...], list[Statement], list[Pending]]:
    """A write with every secret masked: whatever a step, a template or a page said, no secret leaves the run."""
    ops = tuple(
        dataclasses.replace(
            op,
            **{
                f.name: mask_value(v, secrets, ids=True)
                for f in dataclasses.fields(op)
                if isinstance(v := getattr(op, f.name), dict)
            },
        )
        for op in ops
    )
    statements = [(statement, mask_value(params, secrets, ids=True)) for statement, params in statements]
    events = [Pending(e.job_id, e.type, mask_value(e.data, secrets, ids=True)) for e in events]
    return ops, statements, events
