"""What every job run in this worker process shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from orchestrator.limits import Limits
from orchestrator.runbooks.catalog import Version
from orchestrator.services import Services
from orchestrator.urlpolicy import UrlPolicy
from worker.actions import Registry
from worker.browser import BrowserPool
from worker.committer import Committer
from worker.counts import Counts
from worker.lease import Leased, Leases


class Running(Leased, Protocol):
    """A job run in this process, as the worker sees it (worker/executor.py)."""

    def signal(self, action: str) -> None:
        """A person acted on the job: the worker relays the Redis message."""


class Slots(Protocol):
    """The worker's capacity: a job waiting for a person gives its slot back while it waits."""

    def park(self) -> None: ...

    async def unpark(self) -> None: ...


class NoSlots:
    def park(self) -> None:
        return None

    async def unpark(self) -> None:
        return None


@dataclass
class Deps:
    svc: Services
    browsers: BrowserPool
    registry: Registry
    committer: Committer
    robot: str
    leases: Leases
    limits: Limits
    counts: Counts  # what runs add to the cluster's metrics
    running: dict[str, Running] = field(default_factory=dict)
    versions: dict[int, Version] = field(default_factory=dict)
    slots: Slots = field(default_factory=NoSlots)
    policy: UrlPolicy = field(default_factory=UrlPolicy)
