"""Where the limiter keeps its state: the LimitStore interface and the in-memory GCRA store.

A shared store (Redis) implements the same two coroutines; the middleware does not change.
"""

from __future__ import annotations

from typing import Protocol

EPSILON = 1e-9  # float slack, so `burst` requests at one instant all pass


class LimitStore(Protocol):
    """Rate allowances by key: `rate` per second, up to `burst` at once (GCRA)."""

    async def take(self, key: str, rate: float, burst: int, now: float) -> float | None:
        """Spend one unit: None if allowed, else the seconds until one would be."""
        ...

    async def peek(self, key: str, rate: float, burst: int, now: float) -> float | None:
        """Like take, but spends nothing (is the key locked out right now?)."""
        ...


class MemoryStore:
    """GCRA over a dict, for one process.

    Each key holds one float, its theoretical arrival time (TAT). A key whose TAT has passed is
    a full bucket, the same as no entry, so it is dropped: sweeps run every `sweep_every_s` of
    clock time, and past `max_keys` the least recently used key goes (that client gets a fresh
    burst, which is the safe way to fail).
    """

    def __init__(self, *, max_keys: int = 100_000, sweep_every_s: float = 60.0) -> None:
        self.tat: dict[str, float] = {}  # insertion order = least recently used first
        self.max_keys = max_keys
        self.sweep_every_s = sweep_every_s
        self.next_sweep: float | None = None

    def __len__(self) -> int:
        return len(self.tat)

    def check(self, key: str, rate: float, burst: int, now: float) -> tuple[float, float | None]:
        """The key's TAT after one more unit, and the wait if that unit is over the limit."""
        interval = 1.0 / rate
        new_tat = max(self.tat.get(key, now), now) + interval
        over = new_tat - now - burst * interval
        return new_tat, (over if over > EPSILON else None)

    async def take(self, key: str, rate: float, burst: int, now: float) -> float | None:
        self.sweep(now)
        new_tat, wait = self.check(key, rate, burst, now)
        if wait is None:
            self.tat.pop(key, None)
            self.tat[key] = new_tat
            if len(self.tat) > self.max_keys:
                self.sweep(now, force=True)
                while len(self.tat) > self.max_keys:
                    del self.tat[next(iter(self.tat))]
        return wait

    async def peek(self, key: str, rate: float, burst: int, now: float) -> float | None:
        return self.check(key, rate, burst, now)[1]

    def sweep(self, now: float, *, force: bool = False) -> None:
        """Forget keys whose bucket is full again (memory stays bounded by active clients)."""
        if self.next_sweep is None:
            self.next_sweep = now + self.sweep_every_s
        if not force and now < self.next_sweep:
            return
        self.next_sweep = now + self.sweep_every_s
        for key in [k for k, tat in self.tat.items() if tat <= now]:
            del self.tat[key]


class LimitSlot:
    """A LimitStore that is filled in later: in memory until the app's shared store is up."""

    def __init__(self) -> None:
        self.target: LimitStore = MemoryStore()

    async def take(self, key: str, rate: float, burst: int, now: float) -> float | None:
        return await self.target.take(key, rate, burst, now)

    async def peek(self, key: str, rate: float, burst: int, now: float) -> float | None:
        return await self.target.peek(key, rate, burst, now)
