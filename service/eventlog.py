"""EventLog: a session's numbered events, saved in the state store, then sent to its listeners.

A frame goes to the socket once the store holds it (at once with the memory backend), so a
client has no event that a resume, here or on another replica, could not replay; a retried
write is never a second copy, because the store takes each seq once. While the store does not
answer, frames go out at once instead (the run's own socket keeps streaming), and are saved
when it is back.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from service.protocol import ServerEvent
from service.state.base import Frame, LostReason, MemoryDump, RunState, StateStore
from service.text_frames import RunFrames

new_frame = tuple.__new__  # Frame(...) through its namedtuple __new__ costs twice as much
HIGH_WATER = 500  # frames not yet saved before a run waits for the store (Redis stalled)


class Listener(Protocol):
    """Where a session's live events go: each connection attached to it."""

    def deliver(self, data: str, event: str) -> None: ...


class EventLog:
    """Numbers a session's events and sends each one, once saved, to the attached listeners."""

    def __init__(
        self,
        session_id: str,
        store: StateStore,
        *,
        seq: int = 0,
        epoch: int = 1,
        on_lost: Callable[[LostReason], None] | None = None,
    ) -> None:
        self.id = session_id
        self.store = store
        self.seq = seq  # the last seq given out
        self.written_seq = seq  # the last seq the store holds
        self.sent_seq = seq  # the last seq sent to the listeners (>= written_seq)
        self.epoch = epoch
        self.unwritten: deque[Frame] = deque()
        self.listeners: list[Listener] = []  # the sockets attached to it (tabs, reconnects)
        self.on_lost = on_lost
        self.lost_reason: LostReason | None = None
        self.lagging = False  # too many frames wait for the store: runs pause (wait_room)
        self.room = asyncio.Event()  # set while not lagging
        self.room.set()

    def publish(
        self,
        cls: Callable[..., ServerEvent],
        *,
        state: RunState | None = None,
        memory: MemoryDump | None = None,
        **fields: Any,
    ) -> Frame | None:
        """Number an event, save it (with the run state and memory after it), then send it.

        Nothing is published once the session is lost to another owner: its log is theirs.
        """
        if self.lost_reason is not None:
            return None
        seq = self.seq = self.seq + 1
        event = cls(session_id=self.id, seq=seq, **fields)
        return self._append(new_frame(Frame, (seq, event.to_json(), event.event)), state, memory)

    def publish_text(
        self,
        frames: RunFrames,
        event: str,
        members: str,
        *,
        state: RunState | None = None,
        memory: MemoryDump | None = None,
    ) -> Frame | None:
        """`publish` for a run's frame written as text (service.text_frames): its text deltas,
        the most frequent frames, and its steps."""
        if self.lost_reason is not None:
            return None
        seq = self.seq = self.seq + 1
        data = frames.frame(event, seq, members)
        return self._append(new_frame(Frame, (seq, data, event)), state, memory)

    def _append(
        self, frame: Frame, state: RunState | None = None, memory: MemoryDump | None = None
    ) -> Frame:
        """Save a numbered frame, then send it (at once if the store holds it at once)."""
        unwritten = self.unwritten
        unwritten.append(frame)
        self.store.commit(self.id, self.epoch, (frame,), state, memory)
        if self.sent_seq < frame.seq and self.store.status == "degraded":  # not saved at once
            self.hurry()
        if len(unwritten) > HIGH_WATER and not self.lagging:
            self.lagging = True
            self.room.clear()
        return frame

    def save(self, state: RunState, memory: MemoryDump | None = None) -> None:
        """Save the run state (and memory) with no new event."""
        if self.lost_reason is None:
            self.store.commit(self.id, self.epoch, (), state, memory)

    def written(self, seq: int) -> None:
        """The store holds every frame up to `seq`: send those not sent yet."""
        unwritten, listeners = self.unwritten, self.listeners
        while unwritten and unwritten[0].seq <= seq:
            frame = unwritten.popleft()
            self.written_seq = frame.seq
            if frame.seq > self.sent_seq:
                self.sent_seq = frame.seq
                for listener in listeners:
                    listener.deliver(frame.data, frame.event)
        if self.lagging and len(unwritten) <= HIGH_WATER // 2:
            self.lagging = False
            self.room.set()

    def hurry(self) -> None:
        """The store does not answer: send what waits for it now (it is saved when it is back)."""
        listeners = self.listeners
        for frame in self.unwritten:
            if frame.seq > self.sent_seq:
                self.sent_seq = frame.seq
                for listener in listeners:
                    listener.deliver(frame.data, frame.event)

    def sent_unwritten(self, after_seq: int) -> list[Frame]:
        """Frames sent but not yet saved, after `after_seq` (a replay needs them too)."""
        return [f for f in self.unwritten if after_seq < f.seq <= self.sent_seq]

    def lost(self, reason: LostReason) -> None:
        """The store refused a write: the session is another replica's now, or gone."""
        if self.lost_reason is None:
            self.lost_reason = reason
            self.unwritten.clear()
            self.lagging = False
            self.room.set()
            if self.on_lost is not None:
                self.on_lost(reason)

    async def wait_room(self) -> None:
        """Wait while too many frames wait for the store (a run pauses instead of piling up)."""
        if not self.room.is_set():
            await self.room.wait()
