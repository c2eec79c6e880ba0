"""Replays: a session's log sent again to a caller, in pages, from the store.

A caller is who a command comes from (a socket of this process, or one on another replica);
a replay reads what it missed from the state store, page by page, and hands each page to the
caller's bounded outbox, so a client that does not read is closed (1013) before memory grows.
"""

from __future__ import annotations

from typing import Protocol

from service.errors import ReplayUnavailable
from service.protocol import ServerEvent
from service.sessions import Session, not_found
from service.state.base import Frame, SessionRecord, StateStore

PAGE = 200  # frames read from the store at a time for a replay


class Caller(Protocol):
    """Who a command comes from: a socket here (local), or one on another replica."""

    identity: str
    local: bool  # a socket of this process: it can attach, follow and replay

    def send(self, event: ServerEvent) -> None: ...

    def deliver(self, data: str, event: str) -> None: ...

    def redeliver(self, session_id: str, frame: Frame) -> None:
        """Send a frame of a session's log again (a retry's answer), unless it has it."""

    def check_room(self, session_id: str) -> None:
        """TooManySessions if one more session would pass sessions.max_per_connection."""

    def attach(self, session: Session, since: int | None = None) -> None:
        """Listen to a session of this process, having every frame after `since` (default:
        what it has sent so far); a remote caller's replica follows the log instead."""

    def detach(self, session: Session) -> None:
        """Stop listening to a session (it is being closed)."""

    def follow(self, session_id: str, position: int, running: bool) -> None: ...

    def unfollow(self, session_id: str) -> int | None:
        """Stop following a session; the last seq it got, or None if it did not follow it."""

    async def replay(self, frames: list[tuple[str, str]]) -> bool: ...


class Replay:
    """Reads a session's log from the store for a caller: sent again, or replayed on resume."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    async def send_again(self, caller: Caller, session_id: str, seq: int) -> None:
        """Send again the frame `seq` of a session's log (a retried request's answer)."""
        page = await self.store.read(session_id, seq - 1, 1)
        if page is None or not page.frames or page.frames[0].seq != seq:
            raise ReplayUnavailable(
                f"this request_id was answered at seq {seq}, which is no longer held",
                oldest_seq=page.oldest_seq if page is not None else None,
            )
        caller.redeliver(session_id, page.frames[0])

    async def held(
        self, caller: Caller, session: Session, after_seq: int, *, check: bool = True
    ) -> tuple[int, int]:
        """Replay a session held here from the store, then attach: (last seq sent, replayed)."""
        events = session.events
        if check and after_seq > events.sent_seq:
            raise ReplayUnavailable(
                f"last_seq {after_seq} is ahead of this session (its last seq is "
                f"{events.sent_seq})",
                oldest_seq=await self.oldest(session.id, events.written_seq),
            )
        caller.unfollow(session.id)
        position, replayed = after_seq, 0
        while position < events.sent_seq:
            if position < events.written_seq:
                page = await self.store.read(session.id, position, PAGE)
                if page is None:
                    raise not_found(session.id)
                if position + 1 < page.oldest_seq:
                    raise self.trimmed(position, page.oldest_seq)
                frames = [f for f in page.frames if f.seq <= events.sent_seq]
            else:  # sent while the store was away, not saved yet
                frames = events.sent_unwritten(position)
            if not frames or not await caller.replay([(f.data, f.event) for f in frames]):
                break
            position, replayed = frames[-1].seq, replayed + len(frames)
        caller.attach(session, after_seq)  # no await since the last check: live frames next
        return position, replayed

    async def shared(
        self, caller: Caller, record: SessionRecord, after_seq: int
    ) -> tuple[int, int]:
        """Replay a session another replica holds, from the shared log: (last seq, replayed)."""
        caller.unfollow(record.session_id)
        position, replayed = after_seq, 0
        while True:
            page = await self.store.read(record.session_id, position, PAGE)
            if page is None:
                raise not_found(record.session_id)
            if after_seq > page.last_seq:
                raise ReplayUnavailable(
                    f"last_seq {after_seq} is ahead of this session (its last seq is "
                    f"{page.last_seq})",
                    oldest_seq=page.oldest_seq,
                )
            if position + 1 < page.oldest_seq:
                raise self.trimmed(position, page.oldest_seq)
            frames = [(f.data, f.event) for f in page.frames]
            if frames and not await caller.replay(frames):
                break
            if page.frames:
                position, replayed = page.frames[-1].seq, replayed + len(frames)
            if len(page.frames) < PAGE:
                return position, replayed
        return position, replayed

    async def oldest(self, session_id: str, last_seq: int) -> int:
        page = await self.store.read(session_id, last_seq, 0)
        return page.oldest_seq if page is not None else last_seq + 1

    @staticmethod
    def trimmed(after_seq: int, oldest: int) -> ReplayUnavailable:
        return ReplayUnavailable(
            f"events after seq {after_seq} are no longer held; the oldest held is {oldest}",
            oldest_seq=oldest,
        )
