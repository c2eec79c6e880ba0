"""Admission: the header deadline and the caps on connections still sending their head."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from middleware.client import ClientResolver
from service.admission import Admission

PARTIAL = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n"


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


@pytest.fixture
async def served() -> AsyncIterator[tuple[int, Admission]]:
    """A tiny app served through Admission: a 1 s deadline, 2 per address, 3 in all."""
    app = web.Application()
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    assert runner.server is not None
    admission = Admission(header_timeout_s=1.0, per_address=2, total=3, clients=ClientResolver())
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(admission.wrap(runner.server), "127.0.0.1", 0)
    try:
        yield listener.sockets[0].getsockname()[1], admission
    finally:
        listener.close()
        await runner.cleanup()


@pytest.fixture
async def writers() -> AsyncIterator[list[asyncio.StreamWriter]]:
    opened: list[asyncio.StreamWriter] = []
    yield opened
    for writer in opened:
        writer.close()


async def open_partial(
    port: int, writers: list[asyncio.StreamWriter], address: str = "127.0.0.1"
) -> asyncio.StreamReader:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))
    writers.append(writer)
    writer.write(PARTIAL)
    await writer.drain()
    return reader


async def test_admission_head_split_across_reads_is_served_and_released(
    served: tuple[int, Admission],
) -> None:
    port, admission = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(PARTIAL + b"\r")  # the blank line's first byte only
    await writer.drain()
    writer.write(b"\n")
    async with asyncio.timeout(5):
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    assert not admission.pending  # no deadline left for a connection that sent its head
    writer.close()
    await writer.wait_closed()


async def test_admission_closes_a_head_not_finished_in_time(
    served: tuple[int, Admission], writers: list[asyncio.StreamWriter]
) -> None:
    port, _ = served
    reader = await open_partial(port, writers)
    async with asyncio.timeout(5):
        assert await reader.read() == b""


async def test_admission_over_a_cap_closes_the_oldest_not_the_newcomer(
    served: tuple[int, Admission], writers: list[asyncio.StreamWriter]
) -> None:
    port, admission = served
    first, second, third = [await open_partial(port, writers, "127.0.0.5") for _ in range(3)]
    async with asyncio.timeout(0.5):  # over 2 for the address: the first goes, at once
        assert await first.read() == b""
    others = [await open_partial(port, writers, f"127.0.0.{n}") for n in (6, 7)]
    async with asyncio.timeout(0.5):  # over 3 in all: the oldest left goes
        assert await second.read() == b""
    assert [third.at_eof(), *(r.at_eof() for r in others)] == [False, False, False]
    assert len(admission.pending) == 3


async def test_admission_a_burst_of_whole_requests_over_the_caps_is_served(
    served: tuple[int, Admission],
) -> None:
    """Clients that send their head at once are never closed for a cap, however many arrive
    together (behind a proxy, or on reconnecting all at once after a restart)."""
    port, _ = served

    async def get() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        try:
            return await reader.read()
        finally:
            writer.close()

    async with asyncio.timeout(10):
        answers = await asyncio.gather(*(get() for _ in range(30)))  # caps: 2 and 3
    assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 30
