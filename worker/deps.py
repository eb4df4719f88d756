"""What every job run in this worker process shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from orchestrator.runbooks.catalog import Version
from orchestrator.services import Services
from worker.actions import Registry
from worker.browser import BrowserPool
from worker.committer import Committer

if TYPE_CHECKING:
    from worker.executor import Executor


@dataclass
class Deps:
    svc: Services
    browsers: BrowserPool
    registry: Registry
    committer: Committer
    robot: str
    running: dict[str, Executor] = field(default_factory=dict)
    versions: dict[int, Version] = field(default_factory=dict)
