"""The contract every state backend keeps: memory, sqlite and redis run the same tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.metadata import UsageMeta
from service.state.base import (
    Frame,
    Held,
    LostReason,
    PendingApproval,
    RunState,
    SessionRecord,
    StateStore,
)
from service.state.memory import MemoryState
from service.state.redis import RedisState
from service.state.sqlite import SqliteState
from tests.support.poll import until


class Owner:
    """What a session object of the service is to the store: told what became of its writes."""

    def __init__(self) -> None:
        self.written_seq = 0
        self.lost_reasons: list[LostReason] = []
        self.hurried = 0

    def written(self, seq: int) -> None:
        assert seq >= self.written_seq, "written() went backwards"
        self.written_seq = seq

    def lost(self, reason: LostReason) -> None:
        self.lost_reasons.append(reason)

    def hurry(self) -> None:
        self.hurried += 1


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    bounds = {"max_events": 10, "max_bytes": 1000}
    made: StateStore
    if request.param == "memory":
        made = MemoryState(**bounds)
    elif request.param == "sqlite":
        made = SqliteState(tmp_path / "state.db", retention_s=60, **bounds)
    else:
        url = request.getfixturevalue("redis_server_url")
        made = RedisState(url, retention_s=60, lease_s=5, **bounds)
        await made.redis.flushall()
    await made.start()
    yield made
    await made.close()


def frames(first: int, last: int, size: int = 10) -> tuple[Frame, ...]:
    return tuple(
        Frame(seq, f'{{"seq":{seq}}}'.ljust(size), "agent.thinking")
        for seq in range(first, last + 1)
    )


def record(session_id: str = "s1", identity: str = "alice") -> SessionRecord:
    return SessionRecord(session_id=session_id, identity=identity, agent="weather", epoch=1)


async def test_store_commits_are_read_back_in_order(store: StateStore) -> None:
    owner = Owner()
    store.create(record(), owner)
    store.commit("s1", 1, frames(1, 3))
    store.commit("s1", 1, frames(4, 5))
    await store.sync()
    assert owner.written_seq == 5
    page = await store.read("s1", 0, 100)
    assert page is not None
    assert [f.seq for f in page.frames] == [1, 2, 3, 4, 5]
    assert (page.oldest_seq, page.last_seq) == (1, 5)
    page = await store.read("s1", 2, 2)
    assert page is not None and [f.seq for f in page.frames] == [3, 4]
    assert await store.read("nope", 0, 10) is None


async def test_store_takes_each_seq_once(store: StateStore) -> None:
    owner = Owner()
    store.create(record(), owner)
    store.commit("s1", 1, frames(1, 3))
    store.commit("s1", 1, frames(2, 4))  # a retried write, overlapping
    await store.sync()
    page = await store.read("s1", 0, 100)
    assert page is not None and [f.seq for f in page.frames] == [1, 2, 3, 4]


async def test_store_trims_the_log_by_count_and_by_bytes(store: StateStore) -> None:
    store.create(record(), Owner())
    store.commit("s1", 1, frames(1, 25))
    await store.sync()
    page = await store.read("s1", 0, 100)
    assert page is not None and page.oldest_seq == 16 and page.last_seq == 25  # 10 kept
    store.commit("s1", 1, frames(26, 28, size=400))  # 1200 bytes over 1000
    await store.sync()
    page = await store.read("s1", 0, 100)
    assert page is not None and [f.seq for f in page.frames] == [27, 28]
    store.commit("s1", 1, frames(29, 29, size=5000))  # alone over the bound: kept
    await store.sync()
    page = await store.read("s1", 0, 100)
    assert page is not None and [f.seq for f in page.frames] == [29]


async def test_store_keeps_run_state_and_memory_for_the_next_owner(store: StateStore) -> None:
    store.create(record(), Owner())
    waiting = PendingApproval(step_id="c1", tool="send_email", args={"to": "a@b.c"},
                              timeout_s=300, deadline=1.8e9)  # fmt: skip
    used = UsageMeta(prompt_tokens=11, completion_tokens=7, model_calls=1, duration_s=0.5)
    state = RunState(run_id="r1", request_id="q1", approvals=(waiting,), usage=used,
                     run_usage=used)  # fmt: skip
    store.commit("s1", 1, frames(1, 2), state=state, memory=lambda: '{"messages":[]}')
    await store.sync()
    store.release("s1", 1)
    await store.sync()
    peeked = await store.peek("s1")
    assert peeked is not None and peeked.owner == "" and peeked.identity == "alice"
    adopted = await store.acquire("s1", Owner())
    assert isinstance(adopted, SessionRecord)
    assert adopted.epoch == 2 and adopted.last_seq == 2
    assert adopted.state == state and adopted.memory == '{"messages":[]}'


async def test_store_fences_the_former_owner(store: StateStore) -> None:
    first = Owner()
    store.create(record(), first)
    store.commit("s1", 1, frames(1, 1))
    await store.sync()
    second = Owner()
    taken = await store.acquire("s1", second, gone=store.replica)  # its owner is gone
    assert isinstance(taken, SessionRecord) and taken.epoch == 2
    store.commit("s1", 1, frames(2, 2))  # a late write of the former owner
    store.commit("s1", 2, frames(2, 3))
    await store.sync()
    page = await store.read("s1", 0, 100)
    assert page is not None and [f.seq for f in page.frames] == [1, 2, 3]
    assert second.written_seq == 3
    if store.name != "memory":  # in one process the registry never writes with an old epoch
        assert first.lost_reasons == ["fenced"]


async def test_store_deletes_a_session_and_all_of_it(store: StateStore) -> None:
    store.create(record(), Owner())
    store.commit("s1", 1, frames(1, 2))
    store.delete("s1", 1)
    await store.sync()
    assert await store.peek("s1") is None
    assert await store.read("s1", 0, 10) is None
    assert await store.acquire("s1", Owner()) is None


async def test_redis_overrides_only_the_lease_of_the_replica_found_gone(redis_url: str) -> None:
    """Two replicas find a session's owner gone at once: the first takes it over; the other
    must not take it from that live one (the lease it would override is no longer the dead
    owner's), or a message would run on both."""
    bounds = {"max_events": 10, "max_bytes": 1000, "retention_s": 60}
    one, two, three = (RedisState(redis_url, lease_s=30, **bounds) for _ in range(3))
    for store in (one, two, three):
        await store.start()
    try:
        one.create(record(), Owner())
        await one.sync()
        await one.monitor_stop()  # `one` died, its lease not yet run out
        taken = await two.acquire("s1", Owner(), gone=one.replica)
        assert isinstance(taken, SessionRecord) and taken.owner == two.replica
        assert await three.acquire("s1", Owner(), gone=one.replica) == Held(two.replica)
        again = await three.acquire("s1", Owner(), gone=two.replica)  # `two` found gone too
        assert isinstance(again, SessionRecord) and again.epoch == taken.epoch + 1
    finally:
        for store in (one, two, three):
            await store.close()


async def test_redis_lease_holds_a_session_for_its_replica_until_it_runs_out(
    redis_url: str,
) -> None:
    bounds = {"max_events": 10, "max_bytes": 1000, "retention_s": 60}
    one, two = (
        RedisState(redis_url, lease_s=0.5, **bounds),
        RedisState(redis_url, lease_s=0.5, **bounds),
    )
    await one.start()
    await two.start()
    try:
        one.create(record(), Owner())
        await one.sync()
        held = await two.acquire("s1", Owner())
        assert held == Held(one.replica)  # the other replica's lease runs
        await one.monitor_stop()  # as if `one` died: nobody renews its lease

        async def adopted() -> SessionRecord | None:  # once the lease runs out in Redis's clock
            found = await two.acquire("s1", Owner())
            return found if isinstance(found, SessionRecord) else None

        taken = await until(adopted, within_s=5)
        assert isinstance(taken, SessionRecord) and taken.owner == two.replica and taken.epoch == 2
    finally:
        await one.close()
        await two.close()
