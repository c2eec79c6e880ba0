"""Shared fixtures: real system components started on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio

from tests.support.system import redis_server


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server for the whole test session."""
    tmp: Path = tmp_path_factory.mktemp("redis")
    with redis_server(tmp) as url:
        yield url


@pytest.fixture
async def redis_url(redis_server_url: str) -> AsyncIterator[str]:
    """The session's redis-server, emptied for this test."""
    client = redis.asyncio.from_url(redis_server_url)
    await client.flushall()
    await client.aclose()
    yield redis_server_url
