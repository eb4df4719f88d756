"""Who may decide an approval (SPEC section 4: an approval step's `approvers` and `required`).

`approvers` lists `user:NAME` and `role:NAME` entries; only a person one of them matches may approve
or reject. A person is the human behind a decision: a signed-in user, or the user a token acts for
(with that user's roles as stored now); a token that acts for nobody, and the command line, match no
entry. With `required: N`, N distinct people must approve: each approval before the last is a vote in
the job's approval record (`votes`: by, at, comment, evidence) while the job keeps waiting."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.auth import NAME, Principal, roles_of
from orchestrator.db import tables as t

KINDS = ("user", "role")


def check_entry(entry: str) -> str:
    """An `approvers` entry: `user:NAME` or `role:NAME`, NAME spelt as a user or role name is."""
    kind, colon, name = entry.partition(":")
    if kind not in KINDS or not colon or not NAME.match(name):
        raise ValueError(
            f"approvers entry {entry!r} must be user:NAME or role:NAME "
            "(NAME: letters, digits or . _ @ -, starting with a letter or digit)"
        )
    return entry


def check_required(approvers: list[str] | None, required: int) -> None:
    """`required` distinct approvals must be possible: approvers that name only users name enough."""
    users = {entry for entry in approvers or [] if entry.startswith("user:")}
    if approvers and len(users) == len(set(approvers)) and required > len(users):
        raise ValueError(
            f"required is {required}, but approvers names only {len(users)} "
            f"user{'s' if len(users) != 1 else ''} ({', '.join(sorted(users))}): "
            "name more people, or a role:NAME"
        )


@dataclass(frozen=True)
class Person:
    """Whoever decides: `name` is the human (orchestrator.auth.Principal.human), `roles` their roles."""

    name: str
    roles: frozenset[str] = frozenset()

    @classmethod
    def of(cls, principal: Principal) -> Person:
        return cls(principal.human, frozenset(principal.person_roles))

    def matches(self, entry: str) -> bool:
        kind, _, name = entry.partition(":")
        return name == self.name if kind == "user" else kind == "role" and name in self.roles


async def person(conn: AsyncConnection, human: str) -> Person:
    """The person called `human` with their roles as stored now (a user); anyone else (`token:NAME`,
    `cli:NAME`, never a user name: those hold no colon) holds no roles here."""
    if ":" in human:
        return Person(human)
    role = (await conn.execute(select(t.users.c.role).where(t.users.c.name == human))).scalar()
    return Person(human, frozenset(roles_of(role or "")))


def named(approval: Mapping[str, Any]) -> list[str]:
    return list(approval.get("approvers") or [])


def is_approver(approval: Mapping[str, Any], who: Person) -> bool:
    """Whether this person may decide the request, as far as its `approvers` say (anyone, without them)."""
    entries = named(approval)
    return not entries or any(who.matches(entry) for entry in entries)


def votes(approval: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(approval.get("votes") or [])


def vote_of(approval: Mapping[str, Any], who: Person) -> dict[str, Any] | None:
    """This person's approval of the pending request, if they gave one."""
    return next((vote for vote in votes(approval) if vote.get("by") == who.name), None)


def required(approval: Mapping[str, Any]) -> int:
    return max(1, int(approval.get("required") or 1))


def still_needed(approval: Mapping[str, Any]) -> int:
    """How many more distinct approvals the request needs."""
    return max(0, required(approval) - len(votes(approval)))


def may_decide(approval: Mapping[str, Any], who: Person, can_approve: bool) -> bool:
    """Whether this person may approve or reject the pending request now: they hold job:approve, the
    approvers name them (or there are none), and they have not approved it already. (Self-approval is
    the runbook's rule on top: orchestrator/jobs.py, orchestrator/inbox.py.)"""
    return can_approve and not approval.get("decision") and is_approver(approval, who) and not vote_of(approval, who)


def listed(entries: Iterable[str]) -> str:
    return ", ".join(entries)
