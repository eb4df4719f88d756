"""Job, step and record statuses, the user actions, and the one table of allowed moves."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    WAITING_FOR_APPROVAL = "waiting_for_approval"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"
    WAITING = "waiting"
    CANCELLED = "cancelled"


class RecordStatus(StrEnum):
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"


class Action(StrEnum):
    """What a person (or a system on their behalf) may ask of a job."""

    APPROVE = "approve"
    REJECT = "reject"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"


FINISHED = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})

S = JobStatus

#: Every allowed move of a job's status: from -> the statuses it may go to.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    S.SCHEDULED: frozenset({S.QUEUED, S.CANCELLED}),
    S.QUEUED: frozenset({S.RUNNING, S.CANCELLED, S.FAILED}),
    S.RUNNING: frozenset({S.WAITING_FOR_APPROVAL, S.PAUSED, S.COMPLETED, S.FAILED, S.CANCELLED, S.QUEUED}),
    S.WAITING_FOR_APPROVAL: frozenset({S.RUNNING, S.FAILED, S.CANCELLED}),
    S.PAUSED: frozenset({S.RUNNING, S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}

#: The user actions: action -> (statuses it is allowed from, status it leads to).
ACTIONS: dict[Action, tuple[frozenset[JobStatus], JobStatus]] = {
    Action.APPROVE: (frozenset({S.WAITING_FOR_APPROVAL}), S.RUNNING),
    Action.REJECT: (frozenset({S.WAITING_FOR_APPROVAL}), S.FAILED),
    Action.PAUSE: (frozenset({S.RUNNING}), S.PAUSED),
    Action.RESUME: (frozenset({S.PAUSED}), S.RUNNING),
    Action.CANCEL: (frozenset({S.SCHEDULED, S.QUEUED, S.RUNNING, S.PAUSED, S.WAITING_FOR_APPROVAL}), S.CANCELLED),
}

PERMISSIONS: dict[Action, str] = {
    Action.APPROVE: "job:approve",
    Action.REJECT: "job:approve",
    Action.PAUSE: "job:control",
    Action.RESUME: "job:control",
    Action.CANCEL: "job:control",
}


def can_move(current: JobStatus, target: JobStatus) -> bool:
    return target in TRANSITIONS[current]


def allowed_actions(current: JobStatus) -> list[Action]:
    """The actions a job in `current` status accepts now, in table order."""
    return [action for action, (sources, _) in ACTIONS.items() if current in sources]


def action_target(action: Action, current: JobStatus) -> JobStatus | None:
    """Where `action` leads from `current`, or None when it is not allowed now."""
    sources, target = ACTIONS[action]
    return target if current in sources else None


#: What a runbook's `notify` rules (and ORCH_NOTIFY_DEFAULT) may send a message on.
NOTIFY_EVENTS = (
    "approval_requested",
    "approval_reminder",
    "failed",
    "completed",
    "sla_missed",
    "handoff_requested",
    "schedule_missed",
)
#: The limits of a runbook's `settings.sla`, in seconds: queued (created to started), running (started to
#: finished), waiting (for an approval decision).
SLA_LIMITS = ("queued", "running", "waiting")
