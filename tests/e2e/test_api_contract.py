"""The app started as `make run` starts it, with the repository's runbooks: schemathesis with every check
(status codes, content types, response schemas, positive and negative data, undeclared methods) finds nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.e2e.conftest import DevApp
from tests.support import schemathesis_all_checks


async def test_schemathesis_with_every_check_finds_nothing_against_the_dev_app(dev: DevApp, tmp_path: Path) -> None:
    token = await asyncio.to_thread(dev.token, "admin")
    async with httpx.AsyncClient(base_url=dev.url, headers={"Authorization": f"Bearer {token}"}) as http:
        document = (await http.get("/openapi.json")).json()
    assert "/api/v1/runbooks/demo-order/jobs" in document["paths"]  # each runbook's inputs are in the document
    output = await asyncio.to_thread(schemathesis_all_checks, dev.url, f"Bearer {token}", tmp_path)
    assert "passed" in output
