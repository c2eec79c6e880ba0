"""The middleware stack: one ordered list, applied to HTTP requests and to WebSocket frames."""

from middleware.frames import FrameInfo, FrameRejected

__all__ = ["FrameInfo", "FrameRejected"]
