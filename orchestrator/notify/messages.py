"""What a message says: what happened, to which job, why (the error, the approval's message), and a link
to the job page (ORCH_PUBLIC_URL). An approval message also carries the captured values (as the job
shows them: secrets masked) and its evidence screenshot, as a link that needs a sign-in (mail attaches
the image as well). Nothing here reads a secret input: only what the job page shows is used.

What a run captured comes from web pages and is hostile: a message carries at most MAX_CAPTURED_CHARS of
it (the job page has the rest), a text of the job (the approval's message, an error) at most
MAX_TEXT_CHARS, and Slack gets it escaped, so a page's `<!channel>` or `<URL|label>` is shown, not obeyed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from orchestrator.config import Settings

MAX_CAPTURED_CHARS = 2000
MAX_TEXT_CHARS = 2000
#: What of an approval request a message says (and an outbox row keeps): `brief`.
APPROVAL_KEYS = ("step_id", "message", "requested_at", "approvers", "required", "screenshot_url", "remind_every")

TITLES = {
    "approval_requested": "Approval needed",
    "approval_reminder": "Reminder: approval still needed",
    "failed": "Failed",
    "completed": "Completed",
    "sla_missed": "Service level missed",
    "handoff_requested": "A person is needed",
    "schedule_missed": "Schedule missed",
}


@dataclass
class Text:
    """A message, ready for any channel: mail uses subject and body, Slack the body, a webhook the
    whole of it as JSON."""

    event: str
    subject: str
    body: str
    link: str
    facts: dict[str, Any] = field(default_factory=dict)
    evidence_url: str | None = None

    def payload(self, delivery_id: int, sent_at: str) -> dict[str, Any]:
        """The JSON a generic webhook receives."""
        return {
            "id": delivery_id,
            "event": self.event,
            "subject": self.subject,
            "text": self.body,
            "url": self.link,
            "evidence_url": self.evidence_url,
            **self.facts,
            "sent_at": sent_at,
        }

    def slack(self) -> dict[str, Any]:
        """An incoming-webhook message: the body as mrkdwn text, the link last. `&`, `<` and `>` are
        escaped as Slack asks, so no text of the job becomes a mention (`<!channel>`) or a disguised link."""
        return {"text": f"*{_slack_escape(self.subject)}*\n{_slack_escape(self.body)}"}


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cut(text: Any, limit: int = MAX_TEXT_CHARS) -> str:
    """`text` as a string of at most `limit` characters (and an ellipsis when it was longer)."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def brief(approval: Any) -> dict[str, Any]:
    """An approval request as a message needs it, small whatever the run captured: its APPROVAL_KEYS
    (the message cut), and `captured` when its JSON fits MAX_CAPTURED_CHARS, else None with
    `captured_truncated` and the start of it in `captured_text`."""
    if not isinstance(approval, dict):
        return {}
    kept = {k: approval[k] for k in APPROVAL_KEYS if k in approval}
    if kept.get("message") is not None:
        kept["message"] = cut(kept["message"])
    if "approvers" in kept:
        kept["approvers"] = [cut(a, 200) for a in kept["approvers"]] if isinstance(kept["approvers"], list) else None
    if not (isinstance(kept.get("screenshot_url"), str) and kept["screenshot_url"].startswith("/api/v1/jobs/")):
        kept.pop("screenshot_url", None)
    captured = approval.get("captured")
    if "captured_text" in approval:  # briefed already
        kept |= {k: approval.get(k) for k in ("captured", "captured_truncated", "captured_text")}
    elif captured:
        text = json.dumps(captured, indent=2, default=str)
        if len(text) <= MAX_CAPTURED_CHARS:
            kept |= {"captured": captured, "captured_truncated": False, "captured_text": text}
        else:
            cut_text = text[:MAX_CAPTURED_CHARS] + "\n… (more on the job page)"
            kept |= {"captured": None, "captured_truncated": True, "captured_text": cut_text}
    return kept


def compose(settings: Settings, event: str, job: dict[str, Any] | None, detail: dict[str, Any]) -> Text:
    """The message for `event` about `job` (its row, None for a schedule's message) with the `detail`
    the outbox row keeps (the approval request, the reminder's number, the SLA limit, the fire times)."""
    base = settings.public_url
    if job is None:  # schedule_missed
        runbook = detail.get("runbook", "?")
        link = f"{base}/runbooks/{runbook}"
        missed = detail.get("missed", 1)
        lines = [
            f"Schedule {detail.get('schedule_id')} of runbook {runbook} missed {missed} fire time(s),"
            f" from {detail.get('first')} to {detail.get('last')}: the scheduler was not running then,"
            " and its catch_up policy did not run them.",
            f"Runbook: {link}",
        ]
        facts = {"runbook": runbook, "schedule_id": detail.get("schedule_id"), "missed": missed}
        return Text(event, f"{TITLES[event]}: {runbook}", "\n".join(lines), link, facts)
    job_id, runbook = job["id"], job["runbook"]
    link = f"{base}/jobs/{job_id}"
    subject = f"{TITLES[event]}: {runbook} (job {job_id})"
    lines = [f"Job {job_id} of runbook {runbook} (version {job.get('runbook_version')}): {_what(event, job, detail)}"]
    evidence = None
    approval = brief(detail.get("approval") or {})
    if event in ("approval_requested", "approval_reminder"):
        lines.append(f"Asks: {approval.get('message') or '(no message)'}")
        if approval.get("requested_at"):
            lines.append(f"Requested at: {approval['requested_at']}")
        if approvers := approval.get("approvers"):
            required = approval.get("required") or 1
            lines.append(f"Who may decide: {', '.join(approvers)} ({required} approval(s) needed)")
        if captured := approval.get("captured_text"):
            lines.append(f"Captured values:\n{captured}")
        if approval.get("screenshot_url"):
            evidence = f"{base}{approval['screenshot_url']}"
            lines.append(f"Evidence (sign in to see it): {evidence}")
    lines.append(f"Open the job: {link}")
    facts = {
        "job": {"id": job_id, "runbook": runbook, "status": job.get("status"), "url": link},
        "detail": {k: v for k, v in detail.items() if k != "approval"},
    }
    if approval:
        facts["approval"] = {
            k: approval.get(k)
            for k in ("message", "requested_at", "captured", "captured_truncated", "approvers", "required", "step_id")
        }
    return Text(event, subject, "\n".join(lines), link, facts, evidence)


def _what(event: str, job: dict[str, Any], detail: dict[str, Any]) -> str:
    if event == "approval_requested":
        return "waits for an approval decision."
    if event == "approval_reminder":
        return f"still waits for an approval decision (reminder {detail.get('reminder', 1)})."
    if event == "failed":
        error = cut(job.get("error_message") or job.get("summary") or "no error message")
        step = f" at step {job['error_step_id']}" if job.get("error_step_id") else ""
        return f"failed{step}: {error}"
    if event == "completed":
        return f"completed. {cut(job.get('summary') or '')}".strip()
    if event == "sla_missed":
        return (
            f"is over its service level: {detail.get('limit')} for more than {detail.get('seconds'):g} s"
            f" (settings.sla.{detail.get('limit')})."
        )
    if event == "handoff_requested":
        return f"is paused for a person to act in the live browser: {cut(detail.get('message') or job.get('summary'))}"
    return event
