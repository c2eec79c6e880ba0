"""Outbox: one socket's bounded send queue, its writer task, and the burst write.

Live frames and replayed ones share the queue and its bounds (`server.send_queue_frames`,
`server.send_queue_bytes`): a client that does not read is closed with 1013, whatever sends it
frames. A frame goes out at once when nothing waits and the peer keeps up; the rest of a burst
queues behind it and is written in one socket write (FrameWriter).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections import deque
from collections.abc import Sequence

import structlog
from aiohttp import web

from service.metrics import Metrics

log = structlog.get_logger("myagent_ws.connection")
TRY_AGAIN_LATER = 1013
BATCH_BYTES = 256 * 1024  # at most about this much payload in one socket write
REPLAY_WAIT_S = 5.0  # a replay waits this long for the client to read before giving up on it


def text_frame_header(length: int) -> bytes:
    """The header of a final, unmasked, uncompressed text frame (RFC 6455 5.2): what a server
    sends on a socket with compression off."""
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return struct.pack("!BBH", 0x81, 126, length)
    return struct.pack("!BBQ", 0x81, 127, length)


class FrameWriter:
    """Writes a burst of text frames to the socket with one call instead of one per frame.

    A run emits its events in bursts, and on loopback or a LAN the system call and the TCP
    work behind each write are most of what a frame costs. Frames are built as aiohttp builds
    them with `compress=False`, and always whole, so they never interleave with aiohttp's own
    control frames. While the transport is paused (the peer reads slowly) `batching` is False
    and frames go one at a time through aiohttp, which waits for the peer.
    """

    def __init__(self, ws: web.WebSocketResponse, request: web.BaseRequest) -> None:
        self.ws = ws
        self.transport = request.transport
        self.protocol = request.protocol

    @property
    def batching(self) -> bool:
        return self.transport is not None and not self.protocol.writing_paused

    @property
    def open(self) -> bool:
        """False once the close frame went out, or the transport is going."""
        return not (self.ws.closed or self.transport is None or self.transport.is_closing())

    def write(self, payloads: Sequence[bytes]) -> bool:
        """Write the frames in one call; False (nothing written) if the socket is closing."""
        if not self.open:
            return False
        parts = []
        for payload in payloads:
            parts.append(text_frame_header(len(payload)))
            parts.append(payload)
        assert self.transport is not None
        self.transport.write(b"".join(parts))
        return True

    async def send(self, data: str) -> bool:
        """One frame through aiohttp, waiting while the peer is slow; False if closing."""
        try:
            await self.ws.send_str(data)
        except ConnectionResetError:  # closing: the read loop sees the socket end
            return False
        return True

    def abort(self) -> None:
        """Drop the connection without a closing handshake (a peer that does not read)."""
        if self.transport is not None:
            self.transport.abort()


class Outbox:
    """What one socket has to send, bounded; `start()` its writer, `close()` or `finish()`."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.BaseRequest,
        *,
        max_frames: int,
        max_bytes: int,
        metrics: Metrics,
    ) -> None:
        self.ws = ws
        self.out = FrameWriter(ws, request)
        self.max_frames, self.max_bytes = max_frames, max_bytes
        self.metrics = metrics
        self.debug_frames = log.is_enabled_for(logging.DEBUG)
        self.queue: deque[tuple[str, str]] = deque()
        self.queued_bytes = 0
        self.burst = False  # a frame went out at once this turn: the next ones queue
        self.wakeup = asyncio.Event()
        self.drained = asyncio.Event()  # set while nothing waits to be sent
        self.drained.set()
        self.closing = False
        self.close_code: int | None = None
        self.writer: asyncio.Task[None] | None = None

    def start(self, name: str) -> None:
        self.writer = asyncio.create_task(self.write_loop(), name=name)

    def stop(self) -> None:
        if self.writer is not None:
            self.writer.cancel()

    def deliver(self, data: str, event: str) -> None:
        """Send a frame, or queue it; a client too slow to drain its queue is closed with 1013.

        With nothing queued and the peer keeping up, the frame is written at once: the first
        frame of a burst (a run's first token) does not wait for the writer task's turn.
        """
        if self.closing:
            return
        if not self.burst and not self.queue and self.out.batching:
            self.write([(data, event)])
            self.burst = True  # until the loop's next turn, frames queue behind this one
            asyncio.get_running_loop().call_soon(self.burst_over)
            return
        queue, size = self.queue, len(data)
        if len(queue) >= self.max_frames or self.queued_bytes + size > self.max_bytes:
            self.overflow()
            return
        if not queue:  # else the writer is woken already, or still at this queue
            self.drained.clear()
            self.wakeup.set()
        queue.append((data, event))
        self.queued_bytes += size

    def burst_over(self) -> None:
        """The loop's turn after a frame went out at once: the next one may too, unless frames
        queued behind it (then the writer, woken for them, ends the burst once they are out).
        A callback, not the writer's turn: most bursts of a run are one frame."""
        if not self.queue:
            self.burst = False

    async def replay(self, frames: Sequence[tuple[str, str]]) -> bool:
        """Queue replayed frames, filling at most half of the bounds (the rest is for live
        frames), and waiting for the client to read what is queued; a client that reads none
        of it for REPLAY_WAIT_S is closed with 1013. False if the socket is closing."""
        queue, start = self.queue, 0
        share_frames, share_bytes = max(1, self.max_frames // 2), self.max_bytes // 2
        while start < len(frames):
            if self.closing:
                return False
            end, size = start, 0
            while end < len(frames):
                length = len(frames[end][0])
                first = not queue and end == start  # a frame over the share goes alone
                if not first and (
                    len(queue) + end - start >= share_frames
                    or self.queued_bytes + size + length > share_bytes
                ):
                    break
                end, size = end + 1, size + length
            if end == start:  # no room now: wait for the client to read
                await self.wait_drained()
                continue
            queue.extend(frames[start:end])
            self.queued_bytes += size
            self.drained.clear()
            self.wakeup.set()
            start = end
            if self.queued_bytes > share_bytes:  # one frame over the share: let it go out first
                await self.wait_drained()
        return not self.closing

    async def wait_drained(self) -> None:
        """Wait for the client to read everything queued; close it 1013 if it does not."""
        try:
            async with asyncio.timeout(REPLAY_WAIT_S):
                while self.queue and not self.closing:
                    await self.drained.wait()
        except TimeoutError:
            self.overflow()

    def overflow(self) -> None:
        self.metrics.slow_consumers_total.inc()
        log.warning("slow_consumer_closed", queued=len(self.queue), bytes=self.queued_bytes)
        self.close(TRY_AGAIN_LATER, "send queue full: the client does not read")

    async def write_loop(self) -> None:
        """Send the queued frames: a burst in one socket write while the peer keeps up."""
        queue, out = self.queue, self.out
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while queue:
                if not out.batching:  # a slow peer: one frame at a time, aiohttp waits for it
                    data, event = self.next_frame()
                    if not await out.send(data):
                        break
                    self.metrics.sent(event).inc()
                    continue
                frames, size, popleft = [], 0, queue.popleft
                while queue and size < BATCH_BYTES:
                    frames.append(frame := popleft())
                    size += len(frame[0])
                self.queued_bytes -= size
                if not self.write(frames):
                    break
            self.burst = False
            if not queue:
                self.drained.set()

    def write(self, frames: list[tuple[str, str]]) -> bool:
        """Write frames to the socket in one call and count them; False if it is closing."""
        payloads: list[bytes] = []
        counts: dict[str, int] = {}
        for data, event in frames:
            payloads.append(data.encode())
            counts[event] = counts.get(event, 0) + 1
        if not self.out.write(payloads):
            return False
        if self.debug_frames:
            for data, event in frames:
                log.debug("frame_out", frame=event, size=len(data))
        for event, count in counts.items():
            self.metrics.sent(event).inc(count)
        return True

    def next_frame(self) -> tuple[str, str]:
        frame = self.queue.popleft()
        self.queued_bytes -= len(frame[0])
        return frame

    def close(self, code: int, reason: str) -> None:
        """Stop sending and close the socket with `code` (from any task)."""
        if self.closing:
            return
        self.closing, self.close_code = True, code
        self.queue.clear()
        self.queued_bytes = 0
        self.drained.set()
        asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        try:
            async with asyncio.timeout(2):
                await self.ws.close(code=code, message=reason.encode()[:120])
        except TimeoutError:  # the peer does not read even the close frame
            self.out.abort()

    async def finish(self, code: int, reason: str, within_s: float = 1.0) -> None:
        """Send what is already queued (for a short while), then close with `code`."""
        if self.closing:
            return
        self.closing, self.close_code = True, code
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):
                await self.drained.wait()
        await self._close(code, reason)
