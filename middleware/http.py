"""What every layer answers with: the paths the stack treats apart, the JSON of a refusal, and
log context bound for a block."""

from __future__ import annotations

import contextvars
import math
from collections.abc import Mapping
from typing import Any

import structlog
from aiohttp import hdrs, web

HEALTH_PATH = "/health"  # answered in front of the layers: public, never limited
METRICS_PATH = "/metrics"  # takes only the metrics token, if one is set; never limited


def is_upgrade(request: web.Request) -> bool:
    return request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"


def retry_after_header(seconds: float) -> str:
    """Retry-After takes whole seconds; round up so a client that obeys it is let in."""
    return str(max(1, math.ceil(seconds)))


def round_up(seconds: float) -> float:
    return math.ceil(seconds * 1000) / 1000


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    retry_after_s: float | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """The JSON body every refusal of the stack has: {error, code, retry_after_s?}."""
    body: dict[str, object] = {"error": message, "code": code}
    out = dict(headers or {})
    if retry_after_s is not None:
        body["retry_after_s"] = round_up(retry_after_s)
        out[hdrs.RETRY_AFTER] = retry_after_header(retry_after_s)
    return web.json_response(body, status=status, headers=out)


class bound_context:
    """Bind log context for a block, then put back what was there.

    structlog's `bound_contextvars` copies the whole context to save it; this keeps only the
    tokens of what it set, which matters on every request.
    """

    __slots__ = ("fields", "tokens")

    def __init__(self, **fields: object) -> None:
        self.fields = fields
        self.tokens: Mapping[str, contextvars.Token[Any]] = {}

    def __enter__(self) -> None:
        self.tokens = structlog.contextvars.bind_contextvars(**self.fields)

    def __exit__(self, *exc: object) -> None:
        structlog.contextvars.reset_contextvars(**self.tokens)
