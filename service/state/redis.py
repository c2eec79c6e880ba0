"""The Redis backend: replicas share sessions, leases with fencing epochs, and event logs.

Writes are queued and pipelined by one task (service.state.writer), each an atomic fenced Lua
script (service.state.redis_scripts); a session's frames are delivered to its socket once they
are written, so no client sees an event the log does not hold. One monitor task pings Redis
(so /health says `degraded` while it does not answer), notices a Redis that came back without
its data, and renews the leases of the sessions held here.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any, cast

import redis.asyncio
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.state import redis_scripts as lua
from service.state.base import (
    Held,
    Owner,
    Page,
    SessionRecord,
)
from service.state.redis_bus import RedisBus
from service.state.redis_layout import (
    INSTANCE_KEY,
    answering,
    events_key,
    frame_of,
    keys_of,
    memory_key,
    record_of,
    stream_id,
)
from service.state.redis_layout import session_key as session_key
from service.state.writer import Health, Op, QueuedWrites, Result, raise_if_cancelling

log = structlog.get_logger("myagent_ws.state")
PING_EVERY_S = 1.0


class RedisState(QueuedWrites):
    """One replica's view of the shared state; `start()` in cleanup_ctx, `close()` after."""

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        retention_s: float,
        max_events: int,
        max_bytes: int,
        lease_s: float,
    ) -> None:
        replica = uuid.uuid4().hex
        self.redis = redis.asyncio.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=1,
            socket_timeout=3,
            # a pooled connection that Redis closed (it restarted) is retried at once
            retry=Retry(ExponentialWithJitterBackoff(cap=0.25, base=0.02), retries=2),
            client_name=f"myagent-ws:{replica}",
        )
        self.replica = replica
        self.retention_s = retention_s
        self.ttl_s = int(max(retention_s, lease_s)) + 60
        self.lease_ms = int(lease_s * 1000)
        self.renew_every_s = lease_s / 3
        self.max_events, self.max_bytes = max_events, max_bytes
        super().__init__(Health("redis"))
        self.scripts = {
            name: self.redis.register_script(getattr(lua, name))
            for name in ("COMMIT", "RELEASE", "DELETE", "ACQUIRE", "RENEW", "LEASES")
        }
        self.bus = RedisBus(self.redis, self.replica, self.health)
        self.instance: str | None = None
        self.monitor: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            async with asyncio.timeout(2):
                await self.check_instance()
        except Exception as exc:  # Redis away at start: serve anyway, degraded
            raise_if_cancelling()
            self.health.fail(exc)
        self.writer.start()
        self.monitor = asyncio.create_task(self.watch(), name="redis-monitor")
        await self.bus.start()
        log.info("redis_state", replica=self.replica, status=self.status)

    async def close(self) -> None:
        await self.bus.close()
        await self.writer.close()
        await self.monitor_stop()
        await self.redis.aclose()

    async def monitor_stop(self) -> None:
        """Stop pinging and renewing leases (close; tests make a replica look dead with it)."""
        if self.monitor is not None:
            self.monitor.cancel()
            await asyncio.gather(self.monitor, return_exceptions=True)

    # --- writes: queued, in order ----------------------------------------------------------

    async def _flush(self, ops: Sequence[Op]) -> list[Result]:
        async with self.redis.pipeline(transaction=False) as pipe:
            return await self._pipe(pipe, ops)

    async def _pipe(self, pipe: Any, ops: Sequence[Op]) -> list[Result]:
        for op in ops:
            keys = keys_of(op.session_id)
            if op.kind == "create":
                assert op.record is not None
                record = op.record
                pipe.hset(keys[0], mapping={
                    "identity": record.identity, "agent": record.agent, "epoch": record.epoch,
                    "owner": self.replica, "lease_until": int(time.time() * 1000) + self.lease_ms,
                    "last_seq": record.last_seq, "log_bytes": 0,
                    "state": record.state.model_dump_json(),
                })  # fmt: skip
                pipe.expire(keys[0], self.ttl_s)
            elif op.kind == "commit":
                args: list[Any] = [
                    op.epoch, self.max_events, self.max_bytes, self.ttl_s,
                    op.state.model_dump_json() if op.state is not None else "",
                    op.memory or "",
                ]  # fmt: skip
                for frame in op.frames:
                    args += (frame.seq, frame.data, frame.event)
                await self.scripts["COMMIT"](keys=keys, args=args, client=pipe)
            elif op.kind == "release":
                await self.scripts["RELEASE"](keys=keys, args=[op.epoch, self.ttl_s], client=pipe)
            else:
                await self.scripts["DELETE"](keys=keys, args=[op.epoch], client=pipe)
        replies = await pipe.execute(raise_on_error=False)
        results: list[Result] = []
        index = 0
        for op in ops:
            reply = replies[index]
            index += 2 if op.kind == "create" else 1
            if isinstance(reply, RedisConnectionError | RedisTimeoutError):
                raise reply  # the whole batch is tried again: every write is idempotent
            if isinstance(reply, Exception):  # a bug of ours: say it loudly, keep the others
                log.error("state_write_refused", kind=op.kind, error=str(reply)[:300])
                results.append("gone")
            elif op.kind != "commit":
                results.append(0)
            elif int(reply) >= 0:
                results.append(int(reply))
            else:
                results.append("fenced" if int(reply) == -1 else "gone")
        return results

    # --- reads ------------------------------------------------------------------------------

    async def acquire(
        self, session_id: str, owner: Owner, *, gone: str = ""
    ) -> SessionRecord | Held | None:
        keys = [session_key(session_id), memory_key(session_id)]
        async with answering():
            reply = await self.scripts["ACQUIRE"](
                keys=keys, args=[self.replica, self.lease_ms, gone]
            )
        if not reply:
            return None
        if reply[0] == "held":
            return Held(str(reply[1]))
        flat = reply[1]
        fields = dict(zip(flat[::2], flat[1::2], strict=True))
        record = record_of(session_id, fields, reply[2])
        self.owners.hold(session_id, record.epoch, owner)
        return record

    async def peek(self, session_id: str) -> SessionRecord | None:
        async with answering():
            fields = cast(dict[str, str], await self.redis.hgetall(session_key(session_id)))
        return record_of(session_id, fields) if fields else None

    async def read(self, session_id: str, after_seq: int, limit: int) -> Page | None:
        key = events_key(session_id)
        async with answering(), self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(session_key(session_id), "last_seq")
            pipe.xrange(key, stream_id(after_seq + 1), "+", count=max(limit, 1))
            pipe.xrange(key, "-", "+", count=1)
            last, entries, oldest = await pipe.execute()
        entries = entries[:limit]
        if last is None:
            return None
        frames = tuple(frame_of(i, f) for i, f in entries)
        first = frame_of(*oldest[0]).seq if oldest else int(last) + 1
        return Page(frames, first, int(last))

    # --- the monitor: health, data loss, leases --------------------------------------------

    async def check_instance(self) -> None:
        """Notice a Redis that came back without its data (the marker key is gone)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(INSTANCE_KEY, uuid.uuid4().hex, nx=True)
            pipe.get(INSTANCE_KEY)
            _, instance = await pipe.execute()
        if self.instance is not None and instance != self.instance:
            self.health.lost(self.retention_s)
        self.instance = instance

    async def watch(self) -> None:
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(PING_EVERY_S)
            try:
                async with asyncio.timeout(PING_EVERY_S):
                    await self.check_instance()
                self.health.ok()
                if time.monotonic() - renewed >= self.renew_every_s:
                    async with asyncio.timeout(self.renew_every_s):
                        await self.renew()
                        await self.bus.follows.check(self.scripts["LEASES"], self.ttl_s)
                    renewed = time.monotonic()
            except Exception as exc:
                raise_if_cancelling()
                self.health.fail(exc)

    async def renew(self) -> None:
        """Extend the leases of the sessions held here; tell the owners of those we lost."""
        held = self.owners.epochs()
        if not held:
            return
        await self.writer.sync()  # the records of sessions created just now are written
        keys = [key for session_id, _ in held for key in keys_of(session_id)]
        args: list[Any] = [self.replica, self.lease_ms, self.ttl_s, *(e for _, e in held)]
        lost = await self.scripts["RENEW"](keys=keys, args=args)
        for index, reason in zip(lost[::2], lost[1::2], strict=True):
            session_id, epoch = held[int(index) - 1]
            if (owner := self.owners.drop(session_id, epoch)) is not None:
                owner.lost("fenced" if int(reason) == 1 else "gone")
