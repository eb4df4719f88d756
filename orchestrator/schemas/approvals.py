"""The approval inbox as the API shows it (GET /api/v1/approvals; orchestrator/inbox.py)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from orchestrator.schemas.common import Response, Stamp


class Vote(Response):
    by: str = Field(description="the person who approved (a token's owner, for a token)")
    at: Stamp
    comment: str | None = None
    evidence: str | None = Field(default=None, description="SHA-256 of the screenshot they were shown")


class PendingApproval(Response):
    job_id: str
    runbook: str
    runbook_version: int | None = None
    message: str | None = None
    requested_at: Stamp | None = None
    step_id: str | None = None
    screenshot_url: str | None = Field(default=None, description="the page when approval was asked (the evidence)")
    captured: dict[str, Any] = Field(default_factory=dict, description="the values captured so far, secrets masked")
    votes: list[Vote] = Field(default_factory=list, description="the approvals given so far, oldest first")
    required: int = Field(default=1, description="distinct approvals needed; any one reject rejects")
    approvers: list[str] | None = Field(
        default=None, description="`user:NAME` / `role:NAME` entries: only they may decide (none: job:approve)"
    )


class ApprovalInbox(Response):
    items: list[PendingApproval] = Field(description="the oldest requests first (at most 200)")
    total: int = Field(description="every request the caller may decide now")
