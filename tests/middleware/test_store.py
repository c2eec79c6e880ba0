"""The in-memory GCRA store: bursts, refill, retry_after, peek, and bounded memory."""

from __future__ import annotations

import pytest

from middleware.store import MemoryStore


async def test_memory_store_allows_the_burst_then_answers_retry_after() -> None:
    store = MemoryStore()
    answers = [await store.take("k", rate=2.0, burst=3, now=100.0) for _ in range(4)]
    assert answers[:3] == [None, None, None]
    assert answers[3] == pytest.approx(0.5)  # one unit refills every 1/rate seconds


async def test_memory_store_refills_at_its_rate() -> None:
    store = MemoryStore()
    for _ in range(3):
        assert await store.take("k", 2.0, 3, 100.0) is None
    assert await store.take("k", 2.0, 3, 100.25) == pytest.approx(0.25)
    assert await store.take("k", 2.0, 3, 100.5) is None  # exactly one unit back
    assert await store.take("k", 2.0, 3, 100.5) is not None
    for _ in range(3):  # a full bucket after burst / rate seconds
        assert await store.take("k", 2.0, 3, 102.0) is None


async def test_memory_store_keys_are_independent() -> None:
    store = MemoryStore()
    assert await store.take("a", 1.0, 1, 0.0) is None
    assert await store.take("a", 1.0, 1, 0.0) is not None
    assert await store.take("b", 1.0, 1, 0.0) is None


async def test_memory_store_peek_spends_nothing() -> None:
    store = MemoryStore()
    assert await store.peek("k", 1.0, 2, 0.0) is None
    assert await store.take("k", 1.0, 2, 0.0) is None
    assert await store.peek("k", 1.0, 2, 0.0) is None
    assert await store.take("k", 1.0, 2, 0.0) is None
    assert await store.peek("k", 1.0, 2, 0.0) == pytest.approx(1.0)
    assert await store.peek("k", 1.0, 2, 0.0) == pytest.approx(1.0)  # still not spent
    assert await store.peek("k", 1.0, 2, 1.0) is None


async def test_memory_store_forgets_idle_keys() -> None:
    store = MemoryStore(sweep_every_s=10)
    for n in range(100):
        await store.take(f"client-{n}", rate=1.0, burst=5, now=0.0)
    assert len(store) == 100
    await store.take("busy", rate=0.1, burst=5, now=5.0)  # its bucket refills at 15.0
    assert len(store) == 101  # no sweep before sweep_every_s
    await store.take("new", 1.0, 5, 11.0)  # the 100 buckets are full again: dropped
    assert len(store) == 2  # "busy" and "new"
    assert await store.peek("busy", 0.1, 1, 11.0) == pytest.approx(4.0)  # still its TAT (15.0)


async def test_memory_store_stays_under_max_keys() -> None:
    store = MemoryStore(max_keys=50)
    for n in range(500):
        await store.take(f"client-{n}", rate=1.0, burst=5, now=0.0)
        assert len(store) <= 50
    assert await store.peek("client-499", 1.0, 1, 0.0) is not None  # the newest are kept
