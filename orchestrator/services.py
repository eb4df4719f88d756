"""The long-lived parts every process needs, opened once and closed once (no module globals)."""

from __future__ import annotations

from dataclasses import dataclass, field

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import queue
from orchestrator.artifacts import ArtifactStore
from orchestrator.config import Settings
from orchestrator.crypto import SecretBox
from orchestrator.db.engine import create_engine
from orchestrator.ratelimit import LocalCounts
from orchestrator.runbooks.catalog import Catalog


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

    @classmethod
    async def open(cls, settings: Settings) -> Services:
        engine = create_engine(settings.database_url)
        redis = await queue.connect(settings.redis)
        return cls(
            settings=settings,
            engine=engine,
            redis=redis,
            catalog=Catalog(settings.runbooks_dir, engine),
            box=SecretBox(settings.secret_key),
            store=ArtifactStore(settings.artifacts_dir, settings.max_artifact_bytes),
        )

    async def close(self) -> None:
        await self.redis.aclose()
        await self.engine.dispose()
