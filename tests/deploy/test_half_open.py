"""Half-open requests (slowloris) against the real server under `ulimit -n 1024`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from service.settings import ServerSettings
from tests.support.system import free_port

ROOT = Path(__file__).resolve().parents[2]
HALF_OPEN = 2000
ADDRESSES = [f"127.0.1.{n}" for n in range(1, 41)]  # 50 each: over both caps
HEADER_TIMEOUT_S = 3.0
MAX_PENDING = ServerSettings().max_pending  # connections still sending their head, in all
HEALTH_LIMIT_S = 0.1
PARTIAL = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"  # never finished


@contextlib.asynccontextmanager
async def server_under_ulimit(output: Path) -> AsyncIterator[tuple[int, int]]:
    """The server, started as a user would under the common soft limit; yields (port, pid)."""
    port = free_port()
    command = [sys.executable, "-m", "service.cli", "server", "examples/weather_agent.py"]
    line = f"ulimit -n 1024 && exec {shlex.join([*command, '--port', str(port)])}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYAGENT_WS_", "OPENAI_"))}
    env["MYAGENT_WS_SERVER__HEADER_TIMEOUT_S"] = str(HEADER_TIMEOUT_S)
    with output.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            "bash", "-c", line, cwd=ROOT, env=env, stdout=sink, stderr=sink
        )
    try:
        async with asyncio.timeout(20):
            while (await health(port)) is None:
                assert process.returncode is None, "the server exited; see its output"
                await asyncio.sleep(0.05)  # still starting
        yield port, process.pid
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()


async def health(port: int) -> float | None:
    """Seconds for a whole /health answer on a new connection; None if nothing answers."""
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return None
    try:
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        async with asyncio.timeout(2):
            answer = await reader.read()
    except (OSError, TimeoutError):
        return None
    finally:
        writer.close()
    return time.perf_counter() - started if answer.startswith(b"HTTP/1.1 200") else None


async def hold(port: int, address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(address, 0))
    writer.write(PARTIAL)
    return reader, writer


async def closed_by_server(reader: asyncio.StreamReader, within_s: float) -> bool:
    try:
        async with asyncio.timeout(within_s):
            return await reader.read() == b""
    except (OSError, TimeoutError):
        return isinstance(reader.exception(), OSError)


async def test_half_open_requests_are_capped_and_timed_out_and_health_stays_fast(
    tmp_path: Path,
) -> None:
    output = tmp_path / "server.out"
    async with server_under_ulimit(output) as (port, pid):
        held = []
        for address in ADDRESSES:  # bounded: HALF_OPEN connections in all
            per_address = HALF_OPEN // len(ADDRESSES)
            held += await asyncio.gather(*(hold(port, address) for _ in range(per_address)))
        watched = [
            asyncio.create_task(closed_by_server(reader, HEADER_TIMEOUT_S + 5))
            for reader, _ in held
        ]
        # held: the server has taken them all in once all but max_pending were closed at once
        async with asyncio.timeout(HEADER_TIMEOUT_S):
            for count, done in enumerate(asyncio.as_completed(watched), start=1):
                await done
                if count == HALF_OPEN - MAX_PENDING:
                    break
        latencies = [await health(port) for _ in range(20)]
        descriptors = len(os.listdir(f"/proc/{pid}/fd"))
        for _, writer in held:  # a byte each, as a slowloris client trickles: no reprieve
            with contextlib.suppress(OSError):
                writer.write(b"X")
        closed = await asyncio.gather(*watched)
        for _, writer in held:
            writer.close()
    printed = output.read_text(encoding="utf-8", errors="replace")
    assert None not in latencies, "a /health probe got no answer"
    assert max(latencies) < HEALTH_LIMIT_S, f"slowest /health: {max(latencies):.3f} s"  # type: ignore[type-var]
    assert descriptors < 600, descriptors
    assert all(closed), f"{closed.count(False)} half-open requests were never closed"
    assert "out of system resource" not in printed
    assert printed.count("pending_cap_reached") == 1, printed.count("pending_cap_reached")
    assert "Traceback" not in printed
