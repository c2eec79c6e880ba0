"""configure_logging(): structlog JSON lines (or the console renderer), stdlib logs included."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from aiohttp.http_exceptions import HttpProcessingError
from structlog.processors import ExceptionRenderer
from structlog.tracebacks import ExceptionDictTransformer

from middleware.access_log import redact

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class BadRequestFilter(logging.Filter):
    """aiohttp's parser errors as one redacted info line, not a traceback: hostile input is no
    bug, and the offending line it quotes may hold `?token=` or the Authorization header."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            args = record.args if isinstance(record.args, tuple) else ()
            record.client_ip = str(args[0]) if args else None
            record.status = exc.code
            record.error = redact(" ".join(exc.message.split()))[:300]
            record.msg, record.args = "bad_http_request", None
            record.exc_info = record.exc_text = None
            if record.levelno > logging.INFO:
                record.levelno, record.levelname = logging.INFO, "INFO"
        else:  # every other stdlib line (aiohttp, asyncio, the SDKs): redact its text too
            record.msg, record.args = redact(record.getMessage()), None
        return True


def configure_logging(*, json: bool, level: int = logging.INFO) -> None:
    """One pipeline for our logs, the SDK's and the stdlib's (aiohttp, asyncio)."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: list[Any] = (
        [
            ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),  # no locals: tokens
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ]
        if json
        else [structlog.dev.ConsoleRenderer()]
    )
    structlog.configure(
        processors=[*shared, *renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            *shared,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(allow=("client_ip", "status", "error")),
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    handler.addFilter(BadRequestFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # our middleware logs requests
