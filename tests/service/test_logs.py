"""The logging pipeline: every record, structlog's and the stdlib's, passes one redaction."""

from __future__ import annotations

import ast
import random
import subprocess
import sys
import textwrap

import pytest

from middleware.redaction import Redactor

TOKEN = "Zq9-tok/en+x"  # a configured token: it must never be printed, wherever it shows up

PROGRAM = textwrap.dedent(
    f"""
    import logging, structlog
    from service.logs import configure_logging

    configure_logging(json={{json}}, secrets=[{TOKEN!r}])
    log = structlog.get_logger("t")
    log.info("plain", note="the client sent {TOKEN} in a frame")
    log.info("nested", detail={{{{"headers": ["X-Key: {TOKEN}"]}}}}, token="anything")
    logging.getLogger("aiohttp.server").warning("stdlib %s", "{TOKEN}")
    try:
        raise ValueError("bad value {TOKEN}")
    except ValueError:
        log.exception("crashed")
        logging.getLogger("asyncio").exception("stdlib crashed")
    log.info("patterns", a="Authorization: Bearer\\r\\n sec1", b="Bearer\\x01sec2",
             c="/ws?tok%65n=sec3", d="/ws%253Ftoken%253Dsec4", e="token=sec5&x=1")
    """
)


@pytest.mark.parametrize("json", [True, False])
def test_logs_never_print_a_configured_token_or_a_credential(json: bool) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM.format(json=json)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    printed = done.stdout + done.stderr
    for event in ("plain", "nested", "stdlib", "crashed", "stdlib crashed", "patterns"):
        assert event in printed
    assert "ValueError" in printed  # the traceback is there, its secret is not
    assert TOKEN not in printed and "anything" not in printed
    assert not [s for s in ("sec1", "sec2", "sec3", "sec4", "sec5") if s in printed], printed
    assert printed.count("[redacted]") >= 9


@pytest.mark.parametrize(
    "text, shown",
    [
        ("GET /ws?token=abc HTTP/1.1", "GET /ws?token=[redacted] HTTP/1.1"),
        ("b'Authorization: Bearer\\x01abc'", "b'Authorization: Bearer\\x01[redacted]'"),
        ("Authorization:\r\n abc", "Authorization:\r\n [redacted]"),
        ("/ws%3Ftoken%3Dabc", "/ws?token=[redacted]"),
        ("/ws%253Ftoken%253Dabc", "/ws?token=[redacted]"),
        ("/ws?tok%65n=abc", "/ws?token=[redacted]"),
        ("/static/app.js?v=3", "/static/app.js?v=3"),
        ("100% done", "100% done"),
    ],
)
def test_redactor_finds_tokens_behind_separators_and_encodings(text: str, shown: str) -> None:
    assert Redactor()(text) == shown


def test_redaction_shortcut_changes_nothing_the_pattern_would_find() -> None:
    """_scrub skips the pattern for ASCII text naming no credential: on 20,000 texts made of
    credential names, their pieces, cases, gaps and values, it gives what the pattern gives."""
    from middleware.redaction import REDACTED, SECRET, _scrub

    pieces = ["token", "Token", "TOKEN=", "tok", "en=", "=", "api_key=", "API_KEY", "password",
              "PassWord=", "bearer", "BeArEr", "authorization", "Authorization:", "auth",
              " ", "\t", "\r\n", "\\x01", ":", "'", "abc123", "/ws?", "&", "K", "ſ", "é",
              "basic ", "%3D"]  # fmt: skip
    rng = random.Random(7)
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 8)))
        assert _scrub(text) == SECRET.sub(rf"\1\2{REDACTED}", text), text


@pytest.mark.parametrize("level, shown", [("INFO", False), ("DEBUG", True)])
def test_model_http_requests_log_only_at_debug(level: str, shown: bool) -> None:
    """The SDK's HTTP client logs each model request at info: two lines a turn at info."""
    program = textwrap.dedent(
        f"""
        import logging
        from service.logs import configure_logging

        configure_logging(json=True, level=logging.{level})
        logging.getLogger("httpx").info("HTTP Request: POST http://model/v1/chat/completions")
        logging.getLogger("httpx2").info("HTTP Request: POST http://model/v1/chat/completions")
        logging.getLogger("httpx2").warning("model connection dropped")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.count("HTTP Request") == (2 if shown else 0), done.stdout
    assert "model connection dropped" in done.stdout


def test_a_log_line_is_one_write_whatever_the_buffering() -> None:
    """Under PYTHONUNBUFFERED (the image sets it) every write is a system call, and two writes
    of one line can interleave with another writer's: the line and its newline go together."""
    program = textwrap.dedent(
        """
        import sys, structlog
        writes = []
        class Recorder:
            def write(self, text): writes.append(text)
            def flush(self): pass
        sys.stdout = Recorder()
        from service.logs import configure_logging
        configure_logging(json=True)
        structlog.get_logger("t").info("run_finished", outcome="finished")
        sys.__stdout__.write(repr(writes))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    (line,) = ast.literal_eval(done.stdout)
    assert line.endswith("}\n") and '"event": "run_finished"' in line
