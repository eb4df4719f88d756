"""The state table of orchestrator/states.py against SPEC section 5, pair by pair."""

from __future__ import annotations

import itertools

import pytest

from orchestrator.states import (
    ACTIONS,
    PERMISSIONS,
    TRANSITIONS,
    Action,
    JobStatus,
    RecordStatus,
    StepStatus,
    action_target,
    allowed_actions,
    can_move,
)

#: SPEC section 5, written out independently of the code: action -> (allowed from, goes to, permission)
SPEC_ACTIONS = {
    "approve": ({"waiting_for_approval"}, "running", "job:approve"),
    "reject": ({"waiting_for_approval"}, "failed", "job:approve"),
    "pause": ({"running"}, "paused", "job:control"),
    "resume": ({"paused"}, "running", "job:control"),
    "cancel": ({"scheduled", "queued", "running", "paused", "waiting_for_approval"}, "cancelled", "job:control"),
}
SPEC_STATUSES = ["scheduled", "queued", "running", "waiting_for_approval", "paused", "completed", "failed", "cancelled"]


def test_job_step_and_record_statuses_are_the_spec_s() -> None:
    assert [s.value for s in JobStatus] == SPEC_STATUSES
    assert {s.value for s in StepStatus} == {
        "pending",
        "running",
        "success",
        "failed",
        "skipped",
        "waiting",
        "cancelled",
    }
    assert {s.value for s in RecordStatus} == {"success", "failed", "skipped"}
    assert {a.value for a in Action} == set(SPEC_ACTIONS)


@pytest.mark.parametrize(("status", "action"), list(itertools.product(SPEC_STATUSES, SPEC_ACTIONS)))
def test_every_status_and_action_pair(status: str, action: str) -> None:
    sources, target, _ = SPEC_ACTIONS[action]
    current, act = JobStatus(status), Action(action)
    if status in sources:
        assert action_target(act, current) == JobStatus(target)
        assert act in allowed_actions(current)
        assert can_move(current, JobStatus(target)), f"the transition table forbids {status} -> {target}"
    else:
        assert action_target(act, current) is None
        assert act not in allowed_actions(current)


@pytest.mark.parametrize("status", SPEC_STATUSES)
def test_allowed_actions_are_exactly_the_spec_s(status: str) -> None:
    expected = {a for a, (sources, _, _) in SPEC_ACTIONS.items() if status in sources}
    assert {a.value for a in allowed_actions(JobStatus(status))} == expected


@pytest.mark.parametrize("action", list(SPEC_ACTIONS))
def test_each_action_needs_the_spec_s_permission(action: str) -> None:
    assert PERMISSIONS[Action(action)] == SPEC_ACTIONS[action][2]
    sources, target = ACTIONS[Action(action)]
    assert {s.value for s in sources} == SPEC_ACTIONS[action][0]
    assert target.value == SPEC_ACTIONS[action][1]


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_a_finished_job_never_moves_again(status: str) -> None:
    finished = JobStatus(status)
    assert finished.finished
    assert TRANSITIONS[finished] == frozenset()
    assert allowed_actions(finished) == []
    assert not any(can_move(finished, other) for other in JobStatus)


@pytest.mark.parametrize("status", ["scheduled", "queued", "running", "waiting_for_approval", "paused"])
def test_an_unfinished_job_can_always_be_cancelled(status: str) -> None:
    assert not JobStatus(status).finished
    assert can_move(JobStatus(status), JobStatus.CANCELLED)


def test_the_run_path_is_allowed() -> None:
    path = ["scheduled", "queued", "running", "completed"]
    assert all(can_move(JobStatus(a), JobStatus(b)) for a, b in itertools.pairwise(path))
    assert can_move(JobStatus.RUNNING, JobStatus.FAILED)
    assert can_move(JobStatus.RUNNING, JobStatus.WAITING_FOR_APPROVAL)
    assert not can_move(JobStatus.QUEUED, JobStatus.COMPLETED)
    assert not can_move(JobStatus.SCHEDULED, JobStatus.RUNNING)
