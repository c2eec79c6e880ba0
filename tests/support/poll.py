"""Waiting on state outside this process (a Redis TTL, a child process), where no event exists."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def until(
    check: Callable[[], Awaitable[T]], *, within_s: float = 10, every_s: float = 0.05
) -> T:
    """Call `check` until it returns something true, and return that; TimeoutError past within_s."""
    async with asyncio.timeout(within_s):
        while not (result := await check()):  # noqa: ASYNC110 - another process's state
            await asyncio.sleep(every_s)
    return result
