"""A rate-limit store shared by every replica: GCRA in one Lua script on Redis.

It implements middleware.store.LimitStore. Time comes from the Redis server (`TIME`), not from
the caller, because replicas' clocks differ. If Redis is unreachable the limiter fails open to
a per-process memory store (and /health says the state is degraded), so an outage of Redis
does not become an outage of the service.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

from middleware.store import MemoryStore

log = structlog.get_logger("myagent_ws.limits")
PREFIX = "myagent_ws:limit:"
CALL_TIMEOUT_S = 0.25
RETRY_EVERY_S = 1.0  # while Redis is away, try it again this often

# KEYS[1] = bucket; ARGV = interval_s, burst, spend (1 = take, 0 = peek).
# The key holds the theoretical arrival time (TAT) in seconds; it expires when the bucket is full.
GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local over = new_tat - now - burst * interval
if over > 1e-9 then return tostring(over) end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1)
end
return false
"""


class RedisLimitStore:
    """GCRA buckets in Redis, shared by every replica."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self.script = redis.register_script(GCRA)
        self.fallback = MemoryStore()
        self.failing = False
        self.retry_at = 0.0

    async def _run(
        self, key: str, rate: float, burst: int, spend: bool, now: float
    ) -> float | None:
        if self.failing and time.monotonic() < self.retry_at:  # away: no wait on every request
            return await self.fallback_call(key, rate, burst, spend, now)
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):  # on the upgrade path: never wait long
                over = await self.script(keys=[PREFIX + key], args=[1.0 / rate, burst, int(spend)])
        except Exception as exc:  # fail open to this process's memory, and say so once
            if not self.failing:
                log.warning("rate_limit_store_unavailable", error=str(exc))
            self.failing = True
            self.retry_at = time.monotonic() + RETRY_EVERY_S
            return await self.fallback_call(key, rate, burst, spend, now)
        if self.failing:
            log.info("rate_limit_store_recovered")
        self.failing = False
        return float(over) if over else None

    async def fallback_call(
        self, key: str, rate: float, burst: int, spend: bool, now: float
    ) -> float | None:
        method = self.fallback.take if spend else self.fallback.peek
        return await method(key, rate, burst, now)

    async def take(self, key: str, rate: float, burst: int, now: float) -> float | None:
        return await self._run(key, rate, burst, True, now)

    async def peek(self, key: str, rate: float, burst: int, now: float) -> float | None:
        return await self._run(key, rate, burst, False, now)
