"""The shared state of several replicas on Redis: who owns a session, its event log, commands.

- `myagent_ws:session:{id}`  hash: owner identity, replica, agent; the owner refreshes its
                             expiry while it holds the session; a replica that shuts down
                             clears `replica` (its log can still be replayed elsewhere)
- `myagent_ws:events:{id}`   stream of the session's frames (seq, data, event), trimmed to the
                             replay buffer, so another replica can replay and follow them
- `myagent_ws:replica:{id}`  pub/sub channel of a replica: commands for the sessions it owns
                             (message, cancel, close) and frames to deliver to its connections

Writes are queued and pipelined by one task, so publishing an event never waits on Redis; while
Redis is away the service keeps serving its own sessions and /health says `degraded`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, cast

import structlog

from service.errors import ReplayUnavailable

log = structlog.get_logger("myagent_ws.store")
PREFIX = "myagent_ws"
OUTBOX_MAX = 100_000
Handler = Callable[[dict[str, Any]], Awaitable[None]]
Entry = tuple[str, dict[str, str]]  # a stream entry: (id, fields)


def raise_if_cancelling() -> None:
    """Re-raise a cancellation that a library turned into another exception."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def session_key(session_id: str) -> str:
    return f"{PREFIX}:session:{session_id}"


def events_key(session_id: str) -> str:
    return f"{PREFIX}:events:{session_id}"


def replica_channel(replica: str) -> str:
    return f"{PREFIX}:replica:{replica}"


class RedisState:
    """One replica's view of the shared state; `start()` in cleanup_ctx, `close()` after."""

    def __init__(
        self, url: str, *, retention_s: float, max_events: int, max_followed: int = 16
    ) -> None:
        import redis.asyncio as redis  # only when a redis_url is configured

        self.redis = redis.from_url(
            url,
            decode_responses=True,
            health_check_interval=10,
            socket_connect_timeout=2,
            socket_timeout=5,
        )
        self.replica = uuid.uuid4().hex
        self.ttl_s = max(int(retention_s) + 60, 60)
        self.max_events = max_events
        self.max_followed = max_followed  # other replicas' sessions one socket may follow
        self.outbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self._healthy = False
        self.status_changed = asyncio.Event()  # set on every ok <-> degraded change
        self.dropped = 0
        self.on_command: Handler | None = None
        self.touched_at = -math.inf
        self.retiring = False  # shutting down: keep the records of our sessions, ownerless
        self.tasks: list[asyncio.Task[None]] = []
        self.followers: set[asyncio.Task[None]] = set()

    @property
    def healthy(self) -> bool:
        return self._healthy

    @healthy.setter
    def healthy(self, value: bool) -> None:
        if value != self._healthy:
            self._healthy = value
            self.status_changed.set()

    async def wait_status(self, status: str) -> None:
        """Wait until the status is `status` ("ok" or "degraded")."""
        while self.status != status:
            self.status_changed.clear()
            await self.status_changed.wait()

    @property
    def status(self) -> str:
        return "ok" if self.healthy else "degraded"

    async def start(self, on_command: Handler) -> None:
        self.on_command = on_command
        try:
            await self.redis.ping()
            self.healthy = True
        except Exception as exc:  # Redis away at start: serve anyway, degraded
            log.warning("redis_unavailable", error=str(exc))
        self.tasks = [
            asyncio.create_task(self._write_forever(), name="redis-writer"),
            asyncio.create_task(self._listen_forever(), name="redis-listener"),
        ]
        log.info("redis_state", replica=self.replica, status=self.status)

    async def close(self) -> None:
        """Write what is queued (for a short while), then stop every task of this replica."""
        for follower in self.followers:
            follower.cancel()
        await asyncio.gather(*self.followers, return_exceptions=True)
        writer = self.tasks[0]
        self.outbox.put_nowait(("stop",))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await asyncio.shield(writer)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.redis.aclose()

    # --- writes: queued, never awaited by the caller ------------------------------------

    def _put(self, item: tuple[Any, ...]) -> None:
        if self.outbox.qsize() >= OUTBOX_MAX:
            self.dropped += 1
            return
        self.outbox.put_nowait(item)

    def register(self, session_id: str, owner: str, agent: str) -> None:
        self._put(("register", session_id, owner, agent))

    def unregister(self, session_id: str) -> None:
        self._put(("orphan" if self.retiring else "unregister", session_id))

    def retire(self) -> None:
        """This replica is shutting down: from now on its sessions are left in Redis without an
        owner, so a client that reconnects to another replica can still replay their logs."""
        self.retiring = True

    def touch(self, session_ids: list[str]) -> None:
        """Keep the records and logs of the sessions this replica holds from expiring: an
        EXPIRE a session, once a third of their TTL has gone (called every few seconds)."""
        now = time.monotonic()
        if session_ids and now - self.touched_at >= self.ttl_s / 3:
            self.touched_at = now
            self._put(("touch", session_ids))

    async def sync(self) -> None:
        """Wait until everything queued before this call is written to Redis."""
        written = asyncio.get_running_loop().create_future()
        self.outbox.put_nowait(("sync", written))  # never dropped, unlike _put past the bound
        await written

    def append(self, session_id: str, seq: int, data: str, event: str) -> None:
        self._put(("event", session_id, seq, data, event))

    async def _write_forever(self) -> None:
        stopping = False
        while not stopping:
            first = await self.outbox.get()  # wait for work, then take everything queued
            try:
                stopping = await self._flush(first)
                if not self.healthy:
                    log.info("redis_recovered")
                self.healthy = True
            except Exception as exc:
                raise_if_cancelling()  # redis-py may turn a cancellation into an error
                if self.healthy:
                    log.warning("redis_write_failed", error=str(exc))
                self.healthy = False
                await asyncio.sleep(0.5)

    async def _flush(self, first: tuple[Any, ...]) -> bool:
        """Write everything queued in one pipeline; True once the stop marker is reached."""
        items = [first]
        while not self.outbox.empty() and items[-1][0] != "stop":
            items.append(self.outbox.get_nowait())
        pipe = self.redis.pipeline(transaction=False)
        for item in items:
            match item:
                case ("event", sid, seq, data, event):
                    pipe.xadd(
                        events_key(sid),
                        {"seq": seq, "data": data, "event": event},
                        maxlen=self.max_events,
                        approximate=False,
                    )
                    pipe.expire(events_key(sid), self.ttl_s)
                case ("register", sid, owner, agent):
                    pipe.hset(
                        session_key(sid),
                        mapping={"owner": owner, "agent": agent, "replica": self.replica},
                    )
                    pipe.expire(session_key(sid), self.ttl_s)
                case ("unregister", sid):
                    pipe.delete(session_key(sid))
                case ("orphan", sid):
                    pipe.hset(session_key(sid), "replica", "")
                    pipe.expire(session_key(sid), self.ttl_s)
                case ("touch", sids):
                    for sid in sids:
                        pipe.expire(session_key(sid), self.ttl_s)
                        pipe.expire(events_key(sid), self.ttl_s)
                case ("stop",) | ("sync", _):
                    pass
        try:
            await pipe.execute()
        except Exception:
            requeue = [*items]
            while not self.outbox.empty():  # keep them for the next try, in order
                requeue.append(self.outbox.get_nowait())
            for item in requeue:
                if item[0] == "sync":
                    self.outbox.put_nowait(item)
                else:
                    self._put(item)
            raise
        for item in items:
            if item[0] == "sync" and not item[1].done():
                item[1].set_result(None)
        return bool(items[-1][0] == "stop")

    # --- reads --------------------------------------------------------------------------

    async def lookup(self, session_id: str) -> dict[str, str] | None:
        """The session's record (owner, agent, replica), or None."""
        record = cast(dict[str, str], await self.redis.hgetall(session_key(session_id)))
        return record or None

    async def replay(self, session_id: str, last_seq: int) -> tuple[list[tuple[str, str]], str]:
        """Frames with seq > last_seq and the stream id to follow from."""
        entries = cast(list[Entry], await self.redis.xrange(events_key(session_id)))
        last_id = entries[-1][0] if entries else "0-0"
        oldest = int(entries[0][1]["seq"]) if entries else None
        if oldest is not None and last_seq + 1 < oldest:
            raise ReplayUnavailable(
                f"events after seq {last_seq} are no longer held; the oldest held is {oldest}",
                oldest_seq=oldest,
            )
        return [(f["data"], f["event"]) for _, f in entries if int(f["seq"]) > last_seq], last_id

    async def tail_id(self, session_id: str) -> str:
        """The id of the session's newest frame, to follow from."""
        entries = cast(list[Entry], await self.redis.xrevrange(events_key(session_id), count=1))
        return str(entries[0][0]) if entries else "0-0"

    def spawn_follower(
        self,
        session_id: str,
        after_id: str,
        deliver: Callable[[str, str], None],
        after_seq: int = 0,
    ) -> asyncio.Task[None]:
        """A task delivering the session's new frames; cancel it to stop."""
        task = asyncio.create_task(self.follow(session_id, after_id, deliver, after_seq))
        self.followers.add(task)
        task.add_done_callback(self.followers.discard)
        return task

    async def follow(
        self,
        session_id: str,
        after_id: str,
        deliver: Callable[[str, str], None],
        after_seq: int = 0,
    ) -> None:
        """Deliver the session's new frames as they are appended, until cancelled.

        Frames numbered after_seq or lower are skipped: the client already has them (straight
        from the owner, whose writes to the stream may lag behind its socket).
        """
        key = events_key(session_id)
        while True:
            try:
                batches = cast(
                    list[tuple[str, list[Entry]]],
                    await self.redis.xread({key: after_id}, block=1000, count=500),
                )
            except Exception as exc:
                raise_if_cancelling()
                log.warning("redis_follow_failed", error=str(exc))
                await asyncio.sleep(0.5)
                continue
            for _, entries in batches:
                for entry_id, fields in entries:
                    after_id = entry_id
                    if int(fields["seq"]) > after_seq:
                        deliver(fields["data"], fields["event"])

    # --- commands between replicas --------------------------------------------------------

    async def send(self, replica: str, message: dict[str, Any]) -> int:
        """Publish to a replica's channel; the number of replicas that got it (0: it is gone)."""
        return int(await self.redis.publish(replica_channel(replica), json.dumps(message)))

    async def _listen_forever(self) -> None:
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(replica_channel(self.replica))
                    if not self.healthy:  # a replica that writes nothing recovers here
                        log.info("redis_recovered")
                    self.healthy = True
                    async for message in pubsub.listen():
                        if message.get("type") == "message" and self.on_command is not None:
                            try:
                                await self.on_command(json.loads(message["data"]))
                            except Exception:
                                log.exception("redis_command_failed")
            except Exception as exc:
                raise_if_cancelling()
                self.healthy = False
                log.warning("redis_listen_failed", error=str(exc))
                await asyncio.sleep(0.5)
