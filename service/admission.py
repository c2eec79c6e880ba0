"""Connections that have not sent their request head yet: a deadline, and caps on how many.

aiohttp has no header timeout, and counts no connection before its request is parsed, so a
client that opens sockets and sends a byte now and then (slowloris) can hold every descriptor
of the process. Each accepted connection is wrapped here until its head is complete (the blank
line after the headers): past `header_timeout_s` it is closed; over `max_pending_per_address`
for its peer, or `max_pending` in all, the one that has waited longest is closed, so a new
client, which sends its head at once, always gets in. Only a connection that has shown itself
slow is closed for a cap: one that sent part of a head, or has waited GRACE_S; connections
accepted together, whose heads are not read yet, are a burst (a proxy, clients reconnecting
after a restart), not an attack. A trusted proxy's connections are capped only in all. The
first eviction of an episode is logged, then one line a minute at most.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

import structlog
from prometheus_client import Counter

from middleware.client import ClientResolver, parse_ip

log = structlog.get_logger("myagent_ws.admission")
LOG_EVERY_S = 60.0
GRACE_S = 1.0  # a connection that has sent nothing this long is slow, burst or not
HEAD_ENDS = (b"\r\n\r\n", b"\n\n")


class Admission:
    """The connections still sending their request head, oldest first, and the caps on them."""

    def __init__(
        self,
        *,
        header_timeout_s: float,
        per_address: int,
        total: int,
        clients: ClientResolver,
        closed_total: Counter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.header_timeout_s = header_timeout_s
        self.per_address = per_address
        self.total = total
        self.clients = clients
        self.closed_total = closed_total
        self.clock = clock
        self.pending: OrderedDict[Guarded, str] = OrderedDict()  # -> peer address
        self.by_address: dict[str, OrderedDict[Guarded, None]] = {}
        self.evicted = 0  # since the last line
        self.logged_at: float | None = None

    def wrap(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for loop.create_server: each connection guarded until its head."""
        return lambda: Guarded(factory(), self)

    def admit(self, conn: Guarded, peer: str) -> None:
        ip = parse_ip(peer)
        address = str(ip) if ip is not None else peer
        self.pending[conn] = address
        if not self.clients.trusts(ip):
            mine = self.by_address.setdefault(address, OrderedDict())
            mine[conn] = None
            if len(mine) > self.per_address:
                self.evict_slow(next(iter(mine)), "address_cap")
        if len(self.pending) > self.total:
            self.evict_slow(next(iter(self.pending)), "server_cap")

    def evict_slow(self, oldest: Guarded, reason: str) -> None:
        """Close the longest waiting connection for a cap, if it is slow (see the module)."""
        if oldest.partial or self.clock() - oldest.since >= GRACE_S:
            self.evict(oldest, reason)

    def release(self, conn: Guarded) -> None:
        address = self.pending.pop(conn, None)
        if address is None:
            return
        mine = self.by_address.get(address)
        if mine is not None:
            mine.pop(conn, None)
            if not mine:
                del self.by_address[address]

    def evict(self, conn: Guarded, reason: str) -> None:
        self.release(conn)
        conn.close(reason)
        self.evicted += 1
        now = self.clock()
        if self.logged_at is None or now - self.logged_at >= LOG_EVERY_S:
            log.warning(
                "pending_cap_reached",
                reason=reason,
                max_pending=self.total,
                max_pending_per_address=self.per_address,
                pending=len(self.pending),
                evicted=self.evicted,
            )
            self.logged_at, self.evicted = now, 0

    def count(self, reason: str) -> None:
        if self.closed_total is not None:
            self.closed_total.labels(reason).inc()


class Guarded(asyncio.Protocol):
    """aiohttp's protocol for one connection, watched until its request head is complete."""

    def __init__(self, inner: asyncio.Protocol, admission: Admission) -> None:
        self.inner = inner
        self.admission = admission
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.tail = b""  # the last bytes seen, for a head end split across reads
        self.watching = True
        self.partial = False  # part of a head came, not all of it
        self.since = admission.clock()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        admission = self.admission
        peer = transport.get_extra_info("peername")
        self.timer = asyncio.get_running_loop().call_later(
            admission.header_timeout_s, self.close, "header_timeout"
        )
        self.inner.connection_made(transport)
        admission.admit(self, str(peer[0]) if peer else "unknown")

    def data_received(self, data: bytes) -> None:
        if self.watching:
            seen = self.tail + data
            if any(end in seen for end in HEAD_ENDS):
                self.done()
            else:
                self.tail, self.partial = seen[-3:], True
        self.inner.data_received(data)

    def done(self) -> None:
        self.watching = False
        if self.timer is not None:
            self.timer.cancel()
        self.admission.release(self)

    def close(self, reason: str) -> None:
        """Close a connection that did not send its head in time, or lost its place."""
        if not self.watching:
            return
        self.done()
        self.admission.count(reason)
        if self.transport is not None:
            self.transport.abort()  # at once: it holds a descriptor, and owes us nothing

    def connection_lost(self, exc: Exception | None) -> None:
        if self.watching:
            self.done()
        self.inner.connection_lost(exc)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()
