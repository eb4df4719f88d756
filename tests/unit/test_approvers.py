"""Named approvers in a runbook (`approvers`, `required`, `remind_every`) are checked when it loads,
and roles may be lists: built-in roles give their permissions together, other names are groups."""

from __future__ import annotations

import textwrap

import pytest

from orchestrator import auth
from orchestrator.approvers import Person, may_decide, readable
from orchestrator.errors import InvalidInput
from orchestrator.runbooks.loader import RunbookInvalid, parse
from orchestrator.runbooks.steps import Approval


def approval(fields: str) -> Approval:
    source = f"""
    name: sample
    steps:
      - {{id: ask, action: approval, message: "Pay?", {fields}}}
    """
    step = parse(textwrap.dedent(source).lstrip(), "sample.yaml").steps[0]
    assert isinstance(step, Approval)
    return step


def refused(fields: str) -> str:
    with pytest.raises(RunbookInvalid) as caught:
        approval(fields)
    [problem] = [str(p) for p in caught.value.problems]
    assert problem.startswith("sample.yaml:3: "), problem
    return problem


def test_an_approval_step_carries_its_approvers_the_approvals_it_needs_and_its_reminders() -> None:
    step = approval("approvers: [user:ann, role:finance], required: 2, remind_every: 3600")
    assert (step.approvers, step.required, step.remind_every) == (["user:ann", "role:finance"], 2, 3600)
    plain = approval("timeout: 60")
    assert (plain.approvers, plain.required, plain.remind_every) == (None, 1, None)


def test_a_bad_approvers_entry_is_named_in_the_error() -> None:
    problem = refused("approvers: [user:ann, finance]")
    assert "approvers.1" in problem and "'finance' must be user:NAME or role:NAME" in problem
    assert "'group:ops'" in refused("approvers: [group:ops]")
    assert "'user:'" in refused("approvers: ['user:']")
    assert "'user:{{ inputs.who }}'" in refused("approvers: ['user:{{ inputs.who }}']")  # never a template
    assert "at least 1 item" in refused("approvers: []")


def test_required_is_at_least_one_and_no_more_than_the_users_named_when_only_users_are() -> None:
    assert "greater than or equal to 1" in refused("required: 0")
    problem = refused("approvers: [user:ann, user:bob], required: 3")
    assert "required is 3, but approvers names only 2 users (user:ann, user:bob)" in problem
    assert approval("approvers: [user:ann, role:finance], required: 5").required == 5  # a role may hold many
    assert approval("required: 3").required == 3  # anyone with job:approve, three of them
    assert "greater than 0" in refused("remind_every: 0")


def test_roles_may_be_a_list_whose_built_in_roles_give_their_permissions_together() -> None:
    assert auth.check_role("approver, finance") == "approver,finance"
    assert auth.check_role("operator,approver,operator") == "operator,approver"
    both = auth.Principal("ann", "operator,approver", "user")
    assert both.permissions == auth.ROLES["operator"] | auth.ROLES["approver"]
    grouped = auth.Principal("ann", "approver,finance", "user")
    assert grouped.permissions == auth.ROLES["approver"] and grouped.roles == ("approver", "finance")
    for single in auth.ROLES:  # one role is what it always was
        assert auth.check_role(single) == single
        assert auth.Principal("x", single, "user").permissions == auth.ROLES[single]


@pytest.mark.parametrize(
    ("role", "says"),
    [
        ("finance", "must hold at least one of viewer, operator, approver, admin, metrics"),
        ("", "must hold at least one of"),
        ("approver,fin/ance", "'fin/ance' is no role name"),
        ("approver," + ",".join(f"group-{n:03}" for n in range(30)), "fit in 200 characters"),
    ],
)
def test_a_role_list_without_a_built_in_role_or_with_a_bad_name_is_refused(role: str, says: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        auth.check_role(role)
    assert says in caught.value.fields["role"]


def test_a_token_decides_as_its_owner_with_the_owners_roles() -> None:
    request = {"approvers": ["role:finance", "user:carol"], "required": 2, "votes": [{"by": "ann"}]}
    owned = auth.Principal("laptop", "approver", "token", owner="bob", owner_role="approver,finance")
    assert Person.of(owned) == Person("bob", frozenset({"approver", "finance"}))
    assert may_decide(request, Person.of(owned), owned.can(auth.APPROVE))
    service = auth.Principal("ci", "approver,finance", "token")  # acts for nobody: no person to name
    assert not may_decide(request, Person.of(service), True)
    assert not may_decide(request, Person("ann", frozenset({"finance"})), True)  # approved already
    assert may_decide(request, Person("carol"), True)
    assert not may_decide(request, Person("carol"), False)  # without job:approve
    assert not may_decide({**request, "decision": "rejected"}, Person("carol"), True)


def test_a_record_that_cannot_be_read_is_decided_by_nobody() -> None:
    ann = Person("ann", frozenset({"approver", "finance"}))
    asked = {"message": "Pay?", "approvers": ["role:finance"], "required": 1, "votes": []}
    assert may_decide(asked, ann, True)
    for damaged in (
        "not a record",
        None,
        asked | {"approvers": "role:finance"},  # a string, not a list: its letters would match nobody or anyone
        asked | {"approvers": []},
        asked | {"approvers": [None]},
        asked | {"required": "2"},
        asked | {"required": 0},
        asked | {"required": True},
        asked | {"votes": {"by": "bob"}},
        asked | {"votes": [{"by": 5, "at": "2026-01-01T00:00:00Z"}]},
        asked | {"votes": [{"by": "bob", "at": 5}]},
    ):
        assert not readable(damaged), damaged
        assert not may_decide(damaged, ann, True), damaged
    assert readable({}) and readable(asked | {"approvers": None, "required": None, "votes": None})


def test_only_users_count_where_several_people_must_approve() -> None:
    service, shell = Person("token:robot"), Person("cli:root")
    assert may_decide({"required": 1}, service, True) and may_decide({}, shell, True)
    assert not may_decide({"required": 2}, service, True) and not may_decide({"required": 2}, shell, True)
    assert may_decide({"required": 2}, Person("ann"), True)
