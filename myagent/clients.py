"""One AsyncOpenAI client (and connection pool) per model configuration and event loop.

Every LLM with the same key, endpoint, timeout and retries shares it, so an agent file that
builds a new LLM for each session still keeps one pool of connections to the endpoint. The
client is closed when its last user lets go. Clients are kept per event loop: a connection
belongs to the loop that opened it.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from typing import Any

import openai

Key = tuple[str | None, str | None, float, int, str]
_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Key, Lease]] = (
    weakref.WeakKeyDictionary()
)


class Lease:
    """A shared client and how many LLMs hold it."""

    def __init__(self, key: Key, client: openai.AsyncOpenAI, pool: dict[Key, Lease]) -> None:
        self.key = key
        self.client = client
        self.users = 0
        self._pool = pool

    async def release(self) -> None:
        self.users -= 1
        if self.users <= 0:
            if self._pool.get(self.key) is self:
                del self._pool[self.key]
            await self.client.close()


def acquire(args: dict[str, Any]) -> Lease:
    """The client for these LLM arguments (api_key, base_url, timeout, max_retries, transport).

    The key and endpoint come from OPENAI_API_KEY and OPENAI_BASE_URL when not given, read
    now, as the SDK reads them. Outside an event loop each call gets a client of its own.
    """
    key: Key = (
        args["api_key"] or os.environ.get("OPENAI_API_KEY"),
        args["base_url"] or os.environ.get("OPENAI_BASE_URL"),
        float(args["timeout"]),
        int(args["max_retries"]),
        str(args.get("transport", "httpx")),
    )
    try:
        pool = _shared.setdefault(asyncio.get_running_loop(), {})
    except RuntimeError:  # no running loop: nothing to share the connections with
        pool = {}
    lease = pool.get(key)
    if lease is None or lease.client.is_closed():
        client = openai.AsyncOpenAI(
            api_key=key[0],
            base_url=key[1],
            timeout=key[2],
            max_retries=key[3],
            http_client=http_client(key[2]) if key[4] == "aiohttp" else None,
        )
        lease = pool[key] = Lease(key, client, pool)
    lease.users += 1
    return lease


def http_client(timeout: float) -> Any:
    """The SDK's aiohttp transport (openai.DefaultAioHttpClient), None where it is missing.

    It is the SDK's own, with its connection limits, and spends about a third less CPU per
    request than the default httpx2/httpcore2/h11 stack (bench/results, docs/performance.md).
    """
    try:
        return openai.DefaultAioHttpClient(timeout=timeout)
    except RuntimeError:  # openai installed without its aiohttp transport
        return None
