"""Who may decide an approval (SPEC section 4: an approval step's `approvers` and `required`).

`approvers` lists `user:NAME` and `role:NAME` entries; only a person one of them matches may approve
or reject. A person is the human behind a decision: a signed-in user, or the user a token acts for
(with that user's roles as stored now); a token that acts for nobody, and the command line, match no
entry. With `required: N`, N distinct people must approve: each approval before the last is a vote in
the job's approval record (`votes`: by, at, comment, evidence) while the job keeps waiting. Only users
count as people there: a token that acts for nobody, or the command line, cannot tell one person from
another (one person may hold several of them), so they decide no request that needs several people.

A stored record that is not what the worker writes (`readable`) is decided by nobody: every check here
fails closed on it, and the job can still be cancelled or time out."""

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

    @property
    def is_user(self) -> bool:
        """Whether this is a user (user names hold no colon; `token:NAME`, `cli:NAME` do)."""
        return ":" not in self.name

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


def readable(approval: Any) -> bool:
    """Whether a stored approval record can be decided on: a mapping whose `approvers` is absent or a
    non-empty list of entries, `required` absent or a whole number from 1, and `votes` absent or a list
    of votes (each with `by`, and `at` as a time if given)."""
    if not isinstance(approval, Mapping):
        return False
    entries, needed, given = approval.get("approvers"), approval.get("required"), approval.get("votes")
    if entries is not None and not (isinstance(entries, list) and entries and all(isinstance(e, str) for e in entries)):
        return False
    if needed is not None and not (type(needed) is int and needed >= 1):
        return False
    return given is None or (isinstance(given, list) and all(_vote_readable(v) for v in given))


def _vote_readable(vote: Any) -> bool:
    return isinstance(vote, Mapping) and isinstance(vote.get("by"), str) and isinstance(vote.get("at", ""), str)


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


def counts(approval: Mapping[str, Any], who: Person) -> bool:
    """Whether a decision of `who` can count: any principal's on a request one approval settles, only
    a user's on one that needs several distinct people."""
    return who.is_user or required(approval) == 1


def may_decide(approval: Any, who: Person, can_approve: bool) -> bool:
    """Whether this person may approve or reject the pending request now: they hold job:approve, the
    record is readable, the approvers name them (or there are none), they count as a person where
    several are needed, and they have not approved it already. (Self-approval is the runbook's rule on
    top: orchestrator/jobs.py, orchestrator/inbox.py.)"""
    return (
        can_approve
        and readable(approval)
        and not approval.get("decision")
        and is_approver(approval, who)
        and counts(approval, who)
        and not vote_of(approval, who)
    )


def listed(entries: Iterable[str]) -> str:
    return ", ".join(entries)
