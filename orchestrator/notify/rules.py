"""Which channels hear of which events: a runbook's `notify` rules, then ORCH_NOTIFY_DEFAULT's."""

from __future__ import annotations

from orchestrator.config import Settings
from orchestrator.runbooks.schema import Runbook


def channels_for(runbook: Runbook | None, settings: Settings, event: str) -> list[str]:
    """The channels (each once, in rule order) that `event` of a job of `runbook` goes to."""
    rules = [(rule.on, rule.channel) for rule in runbook.notify] if runbook is not None else []
    rules += [(list(events), channel) for events, channel in settings.notify_default]
    found: list[str] = []
    for events, channel in rules:
        if event in events and channel not in found:
            found.append(channel)
    return found


def wants(runbook: Runbook | None, settings: Settings, event: str) -> bool:
    return bool(channels_for(runbook, settings, event))
