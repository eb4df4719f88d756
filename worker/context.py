"""What an action sees: the page (opened on first use), templates, captured values, artifacts."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from playwright.async_api import Locator, Page

from orchestrator import masking
from orchestrator.artifacts import ArtifactStore
from orchestrator.errors import StepError
from orchestrator.urlpolicy import UrlPolicy


@dataclass
class StepContext:
    job_id: str
    step_id: str
    get_page: Callable[[], Awaitable[Page]]
    store: ArtifactStore
    captured: dict[str, Any]
    secrets: frozenset[str]
    masks: list[Locator]
    deadline: float
    load_artifact: Callable[[str], Awaitable[tuple[dict[str, Any], bytes]]]
    #: Ask a person: (context, message, timeout seconds or None, on_timeout, who decides: approvers,
    #: required, remind_every) -> the decision; raises on reject.
    ask: Callable[[StepContext, str, float | None, str, dict[str, Any]], Awaitable[dict[str, Any]]]
    policy: UrlPolicy = field(default_factory=UrlPolicy)
    #: Pause for a person to act in the live browser: (context, message, timeout or None, until or None).
    hand_off: Callable[[StepContext, str, float | None, dict[str, Any] | None], Awaitable[dict[str, Any]]] | None = None
    #: Start a child job of another runbook and wait for it (run_runbook).
    run_child: Callable[[StepContext, Any], Awaitable[dict[str, Any]]] | None = None
    retries: int = 0
    #: The step ran in the browser (its end is made durable before the next browser step begins).
    touched_browser: bool = False
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    logs: list[tuple[str, str]] = field(default_factory=list)

    async def page(self) -> Page:
        return await self.get_page()

    @property
    def remaining(self) -> float:
        """Seconds left for this step."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise StepError("The step ran out of time.")
        return left

    @property
    def timeout_ms(self) -> float:
        return max(1.0, self.remaining * 1000)

    async def save(self, kind: str, name: str, content: bytes, mime_type: str | None = None) -> dict[str, Any]:
        row = await self.store.save(self.job_id, kind, name, content, step_id=self.step_id, mime_type=mime_type)
        self.artifacts.append(row)
        return row

    def log(self, level: str, message: str) -> None:
        self.logs.append((level, message))

    def mask_text(self, text: str) -> str:
        return masking.mask_text(text, self.secrets)

    def mask_value(self, value: Any) -> Any:
        """`value` with every secret in its strings (keys too) replaced by ********."""
        return masking.mask_value(value, self.secrets)
