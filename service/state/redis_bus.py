"""Between replicas on Redis: a pub/sub channel each, and one task following other replicas'
sessions for every socket of this one (one blocking XREAD over every followed stream, not a
connection per follower)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog

from service.state.base import Frame
from service.state.writer import Health, backoff_s, raise_if_cancelling

log = structlog.get_logger("myagent_ws.replicas")
PREFIX = "myagent_ws"
READ_BLOCK_MS = 1000
READ_COUNT = 500
LISTEN_POLL_S = 1.0
CLOSE_WITHIN_S = 2.0
Handler = Callable[[str], Awaitable[None]]


def replica_channel(replica: str) -> str:
    return f"{PREFIX}:replica:{replica}"


def wake_key(replica: str) -> str:
    return f"{PREFIX}:wake:{replica}"


class Sink(Protocol):
    """Who follows a session: told its new frames, and what became of its owner."""

    def deliver(self, frame: Frame) -> None: ...

    def owner_gone(self) -> None:
        """No replica holds the session now (its lease expired, or it was released)."""

    def gone(self) -> None:
        """The session is no more (closed, or Redis lost it)."""


class Follower:
    """One socket following one session from `position` (the last seq it has)."""

    __slots__ = ("position", "session_id", "sink")

    def __init__(self, session_id: str, position: int, sink: Sink) -> None:
        self.session_id = session_id
        self.position = position
        self.sink = sink


class Follows:
    """Every session followed from this replica, read by one task."""

    def __init__(self, redis: Any, replica: str) -> None:
        self.redis = redis
        self.replica = replica
        self.followers: dict[str, set[Follower]] = {}
        self.read_from: dict[str, int] = {}  # stream -> the seq read up to (min of followers)
        self.woken = "0-0"
        self.task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return sum(len(f) for f in self.followers.values())

    def follow(self, session_id: str, position: int, sink: Sink) -> Follower:
        """Deliver the session's frames after `position` to `sink`, until `unfollow`."""
        follower = Follower(session_id, position, sink)
        self.followers.setdefault(session_id, set()).add(follower)
        known = self.read_from.get(session_id)
        if known is None or position < known:
            self.read_from[session_id] = position  # read again from there; others have it
            self.wake()
        return follower

    def unfollow(self, follower: Follower) -> None:
        followers = self.followers.get(follower.session_id)
        if followers is None:
            return
        followers.discard(follower)
        if not followers:
            del self.followers[follower.session_id]
            self.read_from.pop(follower.session_id, None)
        else:
            self.read_from[follower.session_id] = min(f.position for f in followers)

    def wake(self) -> None:
        """End the blocking read, so that it reads the new streams too."""
        task = asyncio.get_running_loop().create_task(self._wake())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _wake(self) -> None:
        await self.redis.xadd(wake_key(self.replica), {"w": 1}, maxlen=1)

    async def run(self) -> None:
        failures = 0
        while True:
            streams = {f"{PREFIX}:events:{sid}": f"{seq}-0" for sid, seq in self.read_from.items()}
            streams[wake_key(self.replica)] = self.woken
            try:
                batches = await self.redis.xread(streams, block=READ_BLOCK_MS, count=READ_COUNT)
            except Exception as exc:
                raise_if_cancelling()
                failures += 1
                if failures == 1:
                    log.warning("follow_read_failed", error=str(exc)[:300])
                await asyncio.sleep(backoff_s(failures, cap=1.0))
                continue
            failures = 0
            for key, entries in batches or ():
                if key == wake_key(self.replica):
                    self.woken = entries[-1][0]
                    continue
                try:
                    self.dispatch(key.rpartition(":")[2], entries)
                except Exception:  # a bug: keep following every other session
                    log.exception("follow_dispatch_failed")

    def dispatch(self, session_id: str, entries: list[tuple[str, dict[str, str]]]) -> None:
        """Give each follower the frames right after its position, in order; one that a
        frame would skip ahead for (it came in behind the read) is read again next time."""
        followers = self.followers.get(session_id)
        if not followers:
            return  # unfollowed while the read was out
        for entry_id, fields in entries:
            frame = Frame(int(entry_id.partition("-")[0]), fields["d"], fields["t"])
            for follower in [*followers]:
                if frame.seq == follower.position + 1:
                    follower.position = frame.seq
                    follower.sink.deliver(frame)
        if session_id in self.followers:  # the next read starts after the one furthest behind
            self.read_from[session_id] = min(f.position for f in self.followers[session_id])

    async def check(self, leases: Any, ttl_s: int) -> None:
        """Tell followers whose session has no owner any more, or is gone (called every few
        seconds); keep the followed sessions from expiring meanwhile."""
        session_ids = [*self.followers]
        if not session_ids:
            return
        keys = [
            f"{PREFIX}:{kind}:{sid}"
            for sid in session_ids
            for kind in ("session", "events", "memory")
        ]
        states = await leases(keys=keys, args=[ttl_s])
        for session_id, state in zip(session_ids, states, strict=True):
            for follower in [*self.followers.get(session_id, ())]:
                if int(state) == 0:
                    follower.sink.gone()
                elif int(state) == 2:
                    follower.sink.owner_gone()


class RedisBus:
    """Messages to other replicas, and the follows of this one."""

    def __init__(self, redis: Any, replica: str, health: Health) -> None:
        self.redis = redis
        self.replica = replica
        self.health = health
        self.follows = Follows(redis, replica)
        self.handler: Handler | None = None
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.tasks = [
            asyncio.create_task(self.listen(), name="redis-listener"),
            asyncio.create_task(self.follows.run(), name="redis-follows"),
        ]

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.tasks:  # bounded: a read inside the Redis client must not hold up the exit
            await asyncio.wait(self.tasks, timeout=CLOSE_WITHIN_S)

    async def send(self, replica: str, message: str) -> int:
        """Publish to a replica's channel: how many got it (0: that replica is gone)."""
        return int(await self.redis.publish(replica_channel(replica), message))

    async def listen(self) -> None:
        failures = 0
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(replica_channel(self.replica))
                    failures = 0
                    while True:  # reads of a bounded time: the task stops when cancelled
                        message = await pubsub.get_message(timeout=LISTEN_POLL_S)
                        if message is None or message.get("type") != "message":
                            continue
                        if self.handler is not None:
                            try:
                                await self.handler(message["data"])
                            except Exception:
                                log.exception("replica_message_failed")
            except Exception as exc:
                raise_if_cancelling()
                failures += 1
                self.health.fail(exc)
                await asyncio.sleep(backoff_s(failures, cap=1.0))
