"""Session-wide real parts: one redis-server and one local target site for the whole run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import redis_server, target_site


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(Path(tmp_path_factory.mktemp("redis"))) as url:
        yield url


@pytest.fixture(scope="session")
def site_url() -> Iterator[str]:
    with target_site() as url:
        yield url


def pytest_configure(config: pytest.Config) -> None:
    # arq 0.28's Worker.close() calls redis-py's deprecated close(); that is arq's warning, not the product's.
    config.addinivalue_line(
        "filterwarnings", "ignore:Call to deprecated close. \\(Use aclose\\(\\) instead\\):DeprecationWarning"
    )
