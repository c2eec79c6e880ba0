"""FrameWriter: text frames to one socket, many to a single write while the peer keeps up."""

from __future__ import annotations

import struct
from collections.abc import Sequence

from aiohttp import web


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
