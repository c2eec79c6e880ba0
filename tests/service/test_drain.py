"""drain(): every socket is told and closed with 1001, all at once, late arrivals included."""

from __future__ import annotations

import asyncio
from typing import Any

from service.app import create_app, drain
from service.keys import connections_key
from tests.service.conftest import offline_weather, settings


class Peer:
    """A socket as drain() sees it; `finish` waits until every peer is being closed."""

    def __init__(self, closing_together: asyncio.Barrier, on_send: Any = None) -> None:
        self.closing_together = closing_together
        self.on_send = on_send
        self.sent: list[str] = []
        self.code: int | None = None

    def send(self, event: Any) -> None:
        self.sent.append(event.event)
        if self.on_send is not None:
            self.on_send()

    async def finish(self, code: int, reason: str) -> None:
        await self.closing_together.wait()  # one at a time, the first would wait forever
        self.code = code


async def test_drain_closes_every_socket_at_once_with_1001(aiohttp_client) -> None:
    app = create_app(settings(server={"shutdown_grace_s": 0}), {"weather": offline_weather})
    await aiohttp_client(app)
    barrier = asyncio.Barrier(3)
    peers = [Peer(barrier) for _ in range(3)]
    app[connections_key].update(peers)  # type: ignore[arg-type]
    async with asyncio.timeout(5):
        await drain(app)
    assert [(p.sent, p.code) for p in peers] == [(["system.shutdown"], 1001)] * 3


async def test_socket_registered_during_the_drain_is_told_and_closed(aiohttp_client) -> None:
    app = create_app(settings(server={"shutdown_grace_s": 0}), {"weather": offline_weather})
    await aiohttp_client(app)
    barrier = asyncio.Barrier(2)
    late = Peer(barrier)
    first = Peer(barrier, on_send=lambda: app[connections_key].add(late))  # type: ignore[arg-type]
    app[connections_key].add(first)  # type: ignore[arg-type]
    async with asyncio.timeout(5):
        await drain(app)
    assert (late.sent, late.code) == (["system.shutdown"], 1001)
    assert (first.sent, first.code) == (["system.shutdown"], 1001)
