"""The long-lived parts every process needs, opened once and closed once (no module globals)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import queue
from orchestrator.artifacts import ArtifactStore, open_store
from orchestrator.config import Settings
from orchestrator.crypto import SecretBox
from orchestrator.db.engine import create_engine
from orchestrator.ratelimit import LocalCounts
from orchestrator.runbooks.catalog import Catalog
from orchestrator.tracing import Tracing


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    redis: ArqRedis
    catalog: Catalog
    box: SecretBox
    store: ArtifactStore
    #: Rate-limit counts of this process, used while Redis is away.
    counts: LocalCounts = field(default_factory=LocalCounts)
    #: Job traces (ORCH_OTEL_ENDPOINT); None when tracing is off.
    tracing: Tracing | None = None

    @classmethod
    async def open(cls, settings: Settings, service: str = "orchestrator") -> Services:
        """The services of a process; `service` names it in traces (orchestrator-web, orchestrator-worker, ...)."""
        store = open_store(settings)
        await store.check()  # a store that is not there (a missing bucket, say) stops the start, naming it
        engine = create_engine(settings.database_url)
        redis = await queue.connect(settings.redis)
        return cls(
            settings=settings,
            engine=engine,
            redis=redis,
            catalog=Catalog(settings.runbooks_dir, engine),
            box=SecretBox(settings.secret_key),
            store=store,
            tracing=Tracing.open(settings.otel_endpoint, service) if settings.otel_endpoint else None,
        )

    async def close(self) -> None:
        await self.redis.aclose()
        await self.engine.dispose()
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.close)  # the spans still in its batch are sent now
