"""What the durable backends share: health with one log line per change, backoff, and the
queue that applies writes in order, in batches, retrying a failed batch (writes are idempotent)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import structlog

from service.state.base import Frame, LostReason, MemoryDump, Owner, RunState, SessionRecord

log = structlog.get_logger("myagent_ws.state")
Status = Literal["ok", "degraded", "lost"]
BATCH_OPS = 512  # writes in one round trip at most (a long outage queues many)


def backoff_s(failures: int, *, base: float = 0.05, cap: float = 2.0) -> float:
    """Exponential backoff with full jitter: retries of many replicas do not come in step."""
    return random.uniform(0, min(cap, base * 2 ** min(failures, 16)))


class Health:
    """A backend's status; an outage logs one warning when it starts and one line when it ends."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.failing = False
        self.lost_until = 0.0
        self.changed = asyncio.Event()
        self.on_fail: Callable[[], None] | None = None  # the store tells its owners to hurry

    @property
    def status(self) -> Status:
        if self.failing:
            return "degraded"
        return "lost" if time.monotonic() < self.lost_until else "ok"

    def ok(self) -> None:
        if self.failing:
            self.failing = False
            log.info("state_store_recovered", backend=self.backend)
            self.changed.set()

    def fail(self, error: BaseException | str) -> None:
        if not self.failing:
            self.failing = True
            log.warning("state_store_unavailable", backend=self.backend, error=str(error)[:300])
            self.changed.set()
            if self.on_fail is not None:
                self.on_fail()

    def lost(self, for_s: float) -> None:
        """The store came back without its data: say so for a while (sessions.retention_s)."""
        log.error("state_store_data_lost", backend=self.backend, sessions="gone")
        self.lost_until = time.monotonic() + for_s
        self.changed.set()

    async def wait(self, status: Status) -> None:
        while self.status != status:
            self.changed.clear()
            await self.changed.wait()


@dataclass(slots=True)
class Op:
    """One queued write: create, commit, release or delete."""

    kind: Literal["create", "commit", "release", "delete"]
    session_id: str
    epoch: int
    frames: list[Frame] = field(default_factory=list)
    state: RunState | None = None
    memory: str | None = None
    record: SessionRecord | None = None  # create

    @property
    def last_seq(self) -> int:
        return self.frames[-1].seq if self.frames else 0


class Owners:
    """The owner of each session held here, with the epoch it holds it under."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[int, Owner]] = {}

    def __len__(self) -> int:
        return len(self.held)

    def hold(self, session_id: str, epoch: int, owner: Owner) -> None:
        """`owner` holds the session now; one that held it before is fenced."""
        before = self.held.get(session_id)
        self.held[session_id] = (epoch, owner)
        if before is not None and before[1] is not owner:
            before[1].lost("fenced")

    def get(self, session_id: str, epoch: int) -> Owner | None:
        held = self.held.get(session_id)
        return held[1] if held is not None and held[0] == epoch else None

    def drop(self, session_id: str, epoch: int | None = None) -> Owner | None:
        held = self.held.get(session_id)
        if held is None or (epoch is not None and held[0] != epoch):
            return None
        del self.held[session_id]
        return held[1]

    def epochs(self) -> list[tuple[str, int]]:
        return [(session_id, epoch) for session_id, (epoch, _) in self.held.items()]

    def everyone(self) -> list[Owner]:
        return [owner for _, owner in self.held.values()]


Result = int | LostReason  # a commit's last seq now held (or 0), or why it was refused
Flush = Callable[[Sequence[Op]], Awaitable[list[Result]]]


def merged(ops: Sequence[Op]) -> list[Op]:
    """Consecutive commits of one session as one write: fewer round trips, same result."""
    out: list[Op] = []
    for op in ops:
        last = out[-1] if out else None
        if (
            last is not None
            and op.kind == last.kind == "commit"
            and (op.session_id, op.epoch) == (last.session_id, last.epoch)
        ):
            last.frames.extend(op.frames)
            last.state = op.state or last.state
            last.memory = op.memory or last.memory
        else:
            out.append(Op(op.kind, op.session_id, op.epoch, [*op.frames], op.state, op.memory,
                          op.record))  # fmt: skip
    return out


class Writer:
    """Applies queued writes in order, in batches, and tells each session's owner the outcome."""

    def __init__(self, flush: Flush, health: Health, owners: Owners) -> None:
        self.flush = flush
        self.health = health
        self.owners = owners  # session id -> the owner to tell, kept by the store
        self.queue: deque[Op | asyncio.Future[None]] = deque()
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name="state-writer")

    def put(self, op: Op) -> None:
        self.queue.append(op)
        self.wakeup.set()

    async def sync(self) -> None:
        done = asyncio.get_running_loop().create_future()
        self.queue.append(done)
        self.wakeup.set()
        await done

    async def run(self) -> None:
        failures = 0
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.queue:
                batch = [*itertools.islice(self.queue, BATCH_OPS)]
                ops = merged([item for item in batch if isinstance(item, Op)])
                try:
                    results = await self.flush(ops) if ops else []
                except Exception as exc:  # the store is away: keep the batch, retry it
                    raise_if_cancelling()
                    self.health.fail(exc)
                    failures += 1
                    await asyncio.sleep(backoff_s(failures))
                    continue
                failures = 0
                self.health.ok()
                for _ in batch:
                    self.queue.popleft()
                self.report(ops, results)
                for item in batch:
                    if isinstance(item, asyncio.Future) and not item.done():
                        item.set_result(None)

    def report(self, ops: Sequence[Op], results: Sequence[Result]) -> None:
        for op, result in zip(ops, results, strict=True):
            owner = self.owners.get(op.session_id, op.epoch)
            if owner is None or op.kind != "commit":
                continue
            if isinstance(result, int):
                owner.written(result)
            else:
                self.owners.drop(op.session_id, op.epoch)
                owner.lost(result)

    async def close(self, within_s: float = 2.0) -> None:
        """Write what is queued, for a short while, then stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):
                await self.sync()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that a library turned into another exception."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class QueuedWrites(ABC):
    """A durable store's write side: each write queued for the Writer, in order, with the
    owners to tell of its outcome. A backend gives its `_flush` of a batch and its Health."""

    def __init__(self, health: Health) -> None:
        self.health = health
        self.owners = Owners()  # the sessions held here (Redis renews their leases)
        self.writer = Writer(self._flush, health, self.owners)
        health.on_fail = self.hurry

    @property
    def status(self) -> str:
        return self.health.status

    @abstractmethod
    async def _flush(self, ops: Sequence[Op]) -> list[Result]:
        """Carry out a batch of writes, in order: each one's seq written, or why it was not."""

    def create(self, record: SessionRecord, owner: Owner) -> None:
        self.owners.hold(record.session_id, record.epoch, owner)
        self.writer.put(Op("create", record.session_id, record.epoch, record=record))

    def commit(
        self,
        session_id: str,
        epoch: int,
        frames: Sequence[Frame],
        state: RunState | None = None,
        memory: MemoryDump | None = None,
    ) -> None:
        dump = memory() if memory is not None else None  # as of this step
        self.writer.put(Op("commit", session_id, epoch, [*frames], state, dump))

    def release(self, session_id: str, epoch: int) -> None:
        self.owners.drop(session_id, epoch)
        self.writer.put(Op("release", session_id, epoch))

    def delete(self, session_id: str, epoch: int) -> None:
        self.owners.drop(session_id, epoch)
        self.writer.put(Op("delete", session_id, epoch))

    async def sync(self) -> None:
        await self.writer.sync()

    def hurry(self) -> None:
        for owner in self.owners.everyone():
            owner.hurry()
