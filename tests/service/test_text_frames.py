"""A run's frames written as text (partial answers, steps) are the models' JSON, byte for byte."""

from __future__ import annotations

import calendar
import json
import operator
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from service.metadata import ThinkingMeta, ToolMeta, UsageMeta
from service.protocol import (
    AgentPartialAnswer,
    AgentThinking,
    AgentToolCall,
    AgentToolResult,
    SessionEvent,
)
from service.text_frames import (
    PARTIAL_ANSWER,
    RunFrames,
    partial_answer,
    stamp,
    thinking,
    tool_call,
    tool_meta,
    tool_result,
)

CONTENTS = [
    "",
    "Sunny, 21 °C",
    '"quoted" \\ back\\slash / slash',
    "tab\tnew\nline\rreturn\bback\fform",
    "".join(chr(c) for c in range(32)) + "\x7f",
    "查询北京天气 😀 \u2028\u2029 \ufeff",
    "</script><!--",
]


@pytest.mark.parametrize("content", CONTENTS)
@pytest.mark.parametrize("request_id", [None, "req-1", 'odd "id" é'])
@pytest.mark.parametrize("run_id", [None, "0123abcd"])
def test_partial_answer_text_is_the_models_json(
    content: str, request_id: str | None, run_id: str | None
) -> None:
    text = RunFrames("s_1", run_id, request_id).frame(PARTIAL_ANSWER, 41, partial_answer(content))
    model = AgentPartialAnswer.model_validate_json(text)
    assert (model.content, model.seq, model.request_id, model.run_id) == (
        content,
        41,
        request_id,
        run_id,
    )
    assert model.to_json() == text  # same fields, order, escapes and timestamp format


@pytest.mark.parametrize("micro", [0, 1, 120, 999_999])
def test_stamp_is_pydantics_datetime_format(micro: int) -> None:
    when = datetime(2026, 12, 2, 23, 59, 59, micro, tzinfo=UTC)
    ns = (calendar.timegm(when.timetuple()) * 1_000_000 + micro) * 1000
    expected = AgentPartialAnswer(session_id="s", content="", timestamp=when).to_json()
    assert f'"timestamp":"{stamp(ns)}"' in expected


def test_stamp_follows_the_clock_across_seconds() -> None:
    first = stamp()
    later = stamp(time.time_ns() + 3_000_000_000)
    assert datetime.fromisoformat(later) > datetime.fromisoformat(first)


def test_partial_answer_text_refuses_a_lone_surrogate_as_the_model_does() -> None:
    with pytest.raises(ValueError):
        AgentPartialAnswer(session_id="s", content="a\ud800").to_json()
    with pytest.raises(ValueError):
        RunFrames("s", "r", None).frame(PARTIAL_ANSWER, 1, partial_answer("a\ud800"))


ARGS = [
    {},
    {"city": "北京"},
    {"n": 1, "x": 2.5, "tiny": 1.5e-7, "big": 10**30, "neg": -0.0, "flag": True},
    {"none": None, "nested": {"l": [1, None, "a\n", {"k": [True]}]}, "é": "</script>"},
    {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")},
    {"model": ThinkingMeta(step=1), "unset": [UsageMeta(), ToolMeta(tool="t", status="failed")]},
]


def both(model: SessionEvent, frames: RunFrames, members: str) -> tuple[str, str]:
    """The model's JSON and the text frame's, at the model's seq and timestamp."""
    text = frames.frame(model.event, model.seq, members)
    when = datetime.fromisoformat(json.loads(text)["timestamp"])
    return model.model_copy(update={"timestamp": when}).to_json(), text


@pytest.mark.parametrize("content", CONTENTS)
@pytest.mark.parametrize("request_id", [None, "req-1"])
def test_thinking_text_is_the_models_json(content: str, request_id: str | None) -> None:
    frames = RunFrames("s_1", "run9", request_id)
    model = AgentThinking(session_id="s_1", seq=7, run_id="run9", request_id=request_id,
                          content=content, metadata=ThinkingMeta(step=3))  # fmt: skip
    assert operator.eq(*both(model, frames, thinking(content, 3)))


@pytest.mark.parametrize("args", ARGS)
@pytest.mark.parametrize("status", ["running", "awaiting_approval"])
def test_tool_call_text_is_the_models_json(args: dict[str, Any], status: Any) -> None:
    frames = RunFrames("s_1", "run9", None)
    meta = ToolMeta(tool="get_weather", args=args, status=status)
    model = AgentToolCall(session_id="s_1", seq=8, run_id="run9", step_id="call_1", metadata=meta)
    members = tool_call("call_1", tool_meta("get_weather", status, args))
    assert operator.eq(*both(model, frames, members))


@pytest.mark.parametrize("content", CONTENTS)
@pytest.mark.parametrize("duration_s", [0.0, 2.1e-05, 0.1234567891234, 12.5, float("nan")])
@pytest.mark.parametrize("status", ["success", "failed"])
def test_tool_result_text_is_the_models_json(content: str, duration_s: float, status: Any) -> None:
    frames = RunFrames("s_1", None, "r")
    meta = ToolMeta(tool="天气", status=status, duration_s=duration_s)
    model = AgentToolResult(session_id="s_1", seq=9, request_id="r", step_id="c", content=content,
                            metadata=meta)  # fmt: skip
    members = tool_result("c", content, tool_meta("天气", status, duration_s=duration_s))
    assert operator.eq(*both(model, frames, members))


def test_step_text_refuses_a_lone_surrogate_as_the_model_does() -> None:
    for build in (
        lambda: thinking("a\ud800", 1),
        lambda: tool_meta("t", "running", {"city": "\udc00"}),
        lambda: tool_result("c", "\ud800", tool_meta("t", "success")),
    ):
        with pytest.raises(ValueError):
            build()
    with pytest.raises(ValueError):
        ToolMeta(tool="t", status="running", args={"city": "\udc00"}).model_dump_json()


def test_a_step_frame_stays_json_whatever_an_agent_puts_in_it() -> None:
    """An agent file builds its own events: a quote in a name or an id cannot break a frame."""
    frames = RunFrames('s"1', 'r"1', 'q"1')
    text = frames.frame("agent.tool_call", 3, tool_call('c"1', tool_meta('t"1', "running")))
    frame = json.loads(text)
    assert frame["metadata"] == {"tool": 't"1', "status": "running"}
    assert (frame["session_id"], frame["run_id"], frame["step_id"]) == ('s"1', 'r"1', 'c"1')


def test_a_status_the_model_does_not_have_is_refused_as_the_model_refuses_it() -> None:
    with pytest.raises(ValueError):
        ToolMeta(tool="t", status="timeout")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        tool_meta("t", "timeout")
