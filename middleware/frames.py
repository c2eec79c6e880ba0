"""The per-frame hook: what a middleware sees of a WebSocket frame, and how it refuses one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

# The agent.error codes a frame middleware may answer with (a subset of the protocol's ErrorCode;
# clients know no others): over a limit, a frame it will not take, a frame too large.
FrameCode = Literal["rate_limited", "invalid_message", "message_too_large"]
FRAME_CODES = frozenset(get_args(FrameCode))


@dataclass(frozen=True, slots=True)
class FrameInfo:
    """A client frame as middlewares see it: who sent it, which event, how big."""

    identity: str
    event: str
    size: int


class FrameRejected(Exception):
    """A middleware refuses a frame: the client gets agent.error with this code.

    `close` asks the connection to close with 1008 (policy violation) after the error. `code`
    must be one of FRAME_CODES: mypy checks typed layers, and this checks every layer at run
    time; a ValueError here is a bug of the middleware, which the dispatcher logs and answers
    with `internal`, keeping the socket.
    """

    def __init__(
        self,
        code: FrameCode,
        message: str,
        *,
        retry_after_s: float | None = None,
        close: bool = False,
    ) -> None:
        if code not in FRAME_CODES:
            known = ", ".join(sorted(FRAME_CODES))
            raise ValueError(f"FrameRejected code {code!r} is not one clients know; use {known}")
        super().__init__(message)
        self.code: FrameCode = code
        self.retry_after_s = retry_after_s
        self.close = close
