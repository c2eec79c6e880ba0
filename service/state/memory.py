"""The in-memory backend: one process, nothing survives it (the default for `make run`)."""

from __future__ import annotations

import itertools
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from service.state.base import (
    Frame,
    Held,
    MemoryDump,
    Owner,
    Page,
    RunState,
    SessionRecord,
)


@dataclass(slots=True)
class _Entry:
    identity: str
    agent: str
    epoch: int
    owner: Owner | None
    last_seq: int
    state: RunState
    # (seq, data, event): plain tuples of strings, which the collector stops tracking, where a
    # Frame (an object) is walked by every collection for as long as the log holds it
    log: deque[tuple[int, str, str]] = field(default_factory=deque)
    log_bytes: int = 0
    memory: MemoryDump | None = None  # taken only when another owner acquires the session

    def record(self, owner: str, memory: str | None = None) -> SessionRecord:
        return SessionRecord(
            session_id="",
            identity=self.identity,
            agent=self.agent,
            epoch=self.epoch,
            owner=owner if self.owner is not None else "",
            last_seq=self.last_seq,
            state=self.state,
            memory=memory,
        )


class MemoryState:
    """Records and logs in a dict; a write is done when `commit` returns."""

    name = "memory"

    def __init__(self, *, max_events: int, max_bytes: int) -> None:
        self.replica = uuid.uuid4().hex
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.entries: dict[str, _Entry] = {}

    @property
    def status(self) -> str:
        return "ok"

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def create(self, record: SessionRecord, owner: Owner) -> None:
        self.entries[record.session_id] = _Entry(
            record.identity, record.agent, record.epoch, owner, record.last_seq, record.state
        )

    def _owned(self, session_id: str, epoch: int) -> _Entry | None:
        entry = self.entries.get(session_id)
        return entry if entry is not None and entry.epoch == epoch else None

    def commit(
        self,
        session_id: str,
        epoch: int,
        frames: Sequence[Frame],
        state: RunState | None = None,
        memory: MemoryDump | None = None,
    ) -> None:
        entry = self.entries.get(session_id)  # (once for every event: _owned, inline)
        if entry is None or entry.epoch != epoch:
            return  # a former owner: in one process the registry never writes like that
        log = entry.log
        for frame in frames:
            if frame[0] > entry.last_seq:
                log.append(frame[:])  # the plain tuple (see _Entry.log)
                entry.log_bytes += len(frame[1])
                entry.last_seq = frame[0]
        if len(log) > self.max_events or entry.log_bytes > self.max_bytes:
            while len(log) > 1 and (len(log) > self.max_events or entry.log_bytes > self.max_bytes):
                entry.log_bytes -= len(log.popleft()[1])
        if state is not None:
            entry.state = state
        if memory is not None:
            entry.memory = memory
        if entry.owner is not None:
            entry.owner.written(entry.last_seq)

    def release(self, session_id: str, epoch: int) -> None:
        if (entry := self._owned(session_id, epoch)) is not None:
            entry.owner = None

    def delete(self, session_id: str, epoch: int) -> None:
        if self._owned(session_id, epoch) is not None:
            del self.entries[session_id]

    async def acquire(
        self, session_id: str, owner: Owner, *, gone: str = ""
    ) -> SessionRecord | Held | None:
        entry = self.entries.get(session_id)
        if entry is None:
            return None
        if entry.owner is not None and entry.owner is not owner and gone != self.replica:
            return Held(self.replica)
        entry.epoch += 1  # every acquire fences the writes before it
        entry.owner = owner
        memory = entry.memory() if entry.memory is not None else None
        return entry.record(self.replica, memory).model_copy(update={"session_id": session_id})

    async def peek(self, session_id: str) -> SessionRecord | None:
        entry = self.entries.get(session_id)
        if entry is None:
            return None
        return entry.record(self.replica).model_copy(update={"session_id": session_id})

    async def read(self, session_id: str, after_seq: int, limit: int) -> Page | None:
        entry = self.entries.get(session_id)
        if entry is None:
            return None
        log = entry.log
        oldest = log[0][0] if log else entry.last_seq + 1
        start = max(0, after_seq + 1 - oldest)  # seqs are consecutive in the log
        frames = tuple(Frame(*kept) for kept in itertools.islice(log, start, start + limit))
        return Page(frames, oldest, entry.last_seq)

    async def sync(self) -> None:
        return None
