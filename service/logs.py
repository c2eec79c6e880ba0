"""configure_logging(): structlog JSON lines (or the console renderer), stdlib logs included.

Every record, ours and the stdlib's (aiohttp, asyncio, the SDKs), passes one Redactor just
before it is rendered: tokens never reach the output, whatever line holds them.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Any

import structlog
from aiohttp.http_exceptions import HttpProcessingError, InvalidURLError
from structlog.processors import ExceptionRenderer
from structlog.tracebacks import ExceptionDictTransformer

from middleware.redaction import Redactor

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


QUOTED = re.compile(r"b?['\"]")  # where aiohttp's message starts quoting the request's bytes


def parser_reason(exc: HttpProcessingError) -> str:
    """What the parser refused, in its words, without the raw line or header it quotes."""
    if isinstance(exc, InvalidURLError):  # its message is the raw target itself
        return "Invalid URL"
    text = QUOTED.split(" ".join(exc.message.split()), maxsplit=1)[0]
    return text.rstrip(" :^.")[:120] or type(exc).__name__


class BadRequestFilter(logging.Filter):
    """aiohttp's parser errors as one info line, not a traceback: hostile input is no bug. The
    line names what was wrong, never the request line or header it was found in."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            args = record.args if isinstance(record.args, tuple) else ()
            record.client_ip = str(args[0]) if args else None
            record.status = exc.code
            record.error = parser_reason(exc)
            record.msg, record.args = "bad_http_request", None
            record.exc_info = record.exc_text = None
            if record.levelno > logging.INFO:
                record.levelno, record.levelname = logging.INFO, "INFO"
        return True


# The openai SDK's HTTP client logs every request at info ("HTTP Request: POST ..."): a line
# and ~0.2 ms per model call, two a turn. At --debug they show, with the SDK's own.
MODEL_HTTP_LOGGERS = ("httpx", "httpx2")


def configure_logging(
    *, json: bool, level: int = logging.INFO, secrets: Iterable[str] = ()
) -> None:
    """One pipeline for our logs, the SDK's and the stdlib's (aiohttp, asyncio).

    `secrets` are the configured token values: redacted wherever they appear, besides the
    patterns. Exceptions are rendered to text first, so their text is redacted too.
    """
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    redact = Redactor(secrets).processor
    renderer: list[Any] = (
        [
            ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),  # no locals: tokens
            redact,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ]
        if json
        else [
            structlog.processors.format_exc_info,  # plain text: no locals, and redacted
            redact,
            structlog.dev.ConsoleRenderer(),
        ]
    )
    structlog.configure(
        processors=[*shared, *renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(sys.stdout),  # a line in one write()
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
    for name in MODEL_HTTP_LOGGERS:  # a line per model request; run_finished has the figures
        logging.getLogger(name).setLevel(
            logging.NOTSET if level <= logging.DEBUG else logging.WARNING
        )
