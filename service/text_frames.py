"""A run's frames written as text: agent.partial_answer for every token, and its steps.

`AgentPartialAnswer(...).to_json()` validates a model, formats a datetime and serialises the
model for each of them (about three quarters of what publishing a frame costs); RunFrames
writes the same JSON, byte for byte, from the parts a run's frames share and each frame's
own members (`partial_answer`, `thinking`, `tool_call`, `tool_result`). The models stay the
frames' schema (docs/protocol.md; the tests compare the two).
"""

from __future__ import annotations

import time
from json.encoder import encode_basestring
from typing import Any, get_args

import pydantic_core

from service.metadata import ToolMeta
from service.protocol import AgentPartialAnswer, AgentThinking, AgentToolCall, AgentToolResult

PARTIAL_ANSWER, THINKING, TOOL_CALL, TOOL_RESULT = (
    model.model_fields["event"].default
    for model in (AgentPartialAnswer, AgentThinking, AgentToolCall, AgentToolResult)
)
TOOL_STATUSES = frozenset(get_args(ToolMeta.model_fields["status"].annotation))


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


def json_value(value: Any) -> str:
    """Any JSON value (a tool call's arguments, a duration) as a model's field of it is written:
    pydantic's own serialiser, NaN and infinities as null, a model's unset (None) fields left out
    as `to_json(exclude_none=True)` leaves them; ValueError for a lone surrogate."""
    return pydantic_core.to_json(value, inf_nan_mode="null", exclude_none=True).decode()


class RunFrames:
    """The session frames of one run: `frame(event, seq, members)` is the JSON text of that
    event's model with session_id, seq, run_id and request_id, `members` (`,"name":value...`,
    in the model's field order, as the functions below write them) after them."""

    def __init__(self, session_id: str, run_id: str | None, request_id: str | None) -> None:
        request = f',"request_id":{json_string(request_id)}' if request_id is not None else ""
        self.run = f',"run_id":{json_string(run_id)}' if run_id is not None else ""
        self.middle = f'"{request},"session_id":{json_string(session_id)},"seq":'

    def frame(self, event: str, seq: int, members: str) -> str:
        return f'{{"event":"{event}","timestamp":"{stamp()}{self.middle}{seq}{self.run}{members}}}'


def partial_answer(content: str) -> str:
    """AgentPartialAnswer's members."""
    return f',"content":{json_string(content)}'


def thinking(content: str, step: int) -> str:
    """AgentThinking's members."""
    return f',"content":{json_string(content)},"metadata":{{"step":{step:d}}}'


def tool_meta(tool: str, status: str, args: Any = None, duration_s: float | None = None) -> str:
    """A ToolMeta as JSON text; ValueError for a status it does not have, as the model."""
    if status not in TOOL_STATUSES:
        raise ValueError(f"status: {status[:40]!r} is none of {sorted(TOOL_STATUSES)}")
    text = f'{{"tool":{json_string(tool)}'
    if args is not None:
        text += f',"args":{json_value(args)}'
    text += f',"status":"{status}"'  # one of the words above: nothing to escape
    if duration_s is not None:
        text += f',"duration_s":{json_value(float(duration_s))}'
    return text + "}"


def tool_call(step_id: str, meta: str) -> str:
    """AgentToolCall's members."""
    return f',"step_id":{json_string(step_id)},"metadata":{meta}'


def tool_result(step_id: str, content: str, meta: str) -> str:
    """AgentToolResult's members."""
    return f',"step_id":{json_string(step_id)},"content":{json_string(content)},"metadata":{meta}'
