"""The long-lived parts every process needs, opened once and closed once (no module globals)."""

from __future__ import annotations

from dataclasses import dataclass

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator import queue
from orchestrator.artifacts import ArtifactStore
from orchestrator.config import Settings
from orchestrator.crypto import SecretBox
from orchestrator.db.engine import create_engine
from orchestrator.runbooks.catalog import Catalog


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    redis: ArqRedis
    catalog: Catalog
    box: SecretBox
    store: ArtifactStore

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
            store=ArtifactStore(settings.artifacts_dir),
        )

    async def close(self) -> None:
        await self.redis.aclose()
        await self.engine.dispose()
