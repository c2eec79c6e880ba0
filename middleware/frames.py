"""The per-frame hook: what a middleware sees of a WebSocket frame, and how it refuses one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FrameInfo:
    """A client frame as middlewares see it: who sent it, which event, how big."""

    identity: str
    event: str
    size: int


class FrameRejected(Exception):
    """A middleware refuses a frame: the client gets agent.error with this code.

    `close` asks the connection to close with 1008 (policy violation) after the error.
    """

    def __init__(
        self, code: str, message: str, *, retry_after_s: float | None = None, close: bool = False
    ) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after_s = retry_after_s
        self.close = close
