"""agent.partial_answer frames written as text: a run sends one for every token.

`AgentPartialAnswer(...).to_json()` validates a model, formats a datetime and serialises the
model for each of them (about three quarters of what publishing a frame costs); PartialAnswers
writes the same JSON, byte for byte, from the parts a run's frames share. The model stays the
frame's schema (docs/protocol.md, the tests compare the two).
"""

from __future__ import annotations

import time
from json.encoder import encode_basestring

from service.protocol import AgentPartialAnswer

EVENT = AgentPartialAnswer.model_fields["event"].default


class _Second:
    """The date and time of day of the current second, formatted once a second."""

    at = -1
    text = ""


def stamp(ns: int | None = None) -> str:
    """The time (now, or `ns` since the epoch) as pydantic writes a UTC datetime:
    2026-12-02T04:39:24.453268Z, or 2026-12-02T04:39:24Z on the second."""
    second, micro = divmod((time.time_ns() if ns is None else ns) // 1000, 1_000_000)
    if second != _Second.at:
        _Second.text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _Second.at = second
    return f"{_Second.text}.{micro:06d}Z" if micro else f"{_Second.text}Z"


def json_string(text: str) -> str:
    """A JSON string as pydantic writes it (non-ASCII kept); ValueError for text that is not
    valid Unicode (a lone surrogate), as pydantic's serialiser raises."""
    if not text.isascii():
        text.encode()  # UnicodeEncodeError (a ValueError) for a lone surrogate
    return str(encode_basestring(text))


class PartialAnswers:
    """The agent.partial_answer frames of one run: `encode(seq, content)` is the JSON text of
    AgentPartialAnswer(session_id, seq, run_id, request_id, content)."""

    event = EVENT

    def __init__(self, session_id: str, run_id: str | None, request_id: str | None) -> None:
        request = f',"request_id":{json_string(request_id)}' if request_id is not None else ""
        run = f',"run_id":{json_string(run_id)}' if run_id is not None else ""
        self.head = f'{{"event":"{EVENT}","timestamp":"'
        self.middle = f'"{request},"session_id":{json_string(session_id)},"seq":'
        self.tail = f'{run},"content":'

    def encode(self, seq: int, content: str) -> str:
        return f"{self.head}{stamp()}{self.middle}{seq}{self.tail}{json_string(content)}}}"
