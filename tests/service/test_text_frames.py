"""agent.partial_answer frames written as text are the model's JSON, byte for byte."""

from __future__ import annotations

import calendar
import time
from datetime import UTC, datetime

import pytest

from service.protocol import AgentPartialAnswer
from service.text_frames import PartialAnswers, stamp

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
    text = PartialAnswers("s_1", run_id, request_id).encode(41, content)
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
        PartialAnswers("s", "r", None).encode(1, "a\ud800")
