"""The protocol's generated reference stays in step with the models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

from myagent.errors import ErrorKind
from service.protocol import SERVER_EVENTS, AgentFinalAnswer, ErrorCode, protocol_schema
from service.wire import run_error_code

ROOT = Path(__file__).resolve().parents[2]


def test_protocol_schema_file_matches_the_models() -> None:
    stored = json.loads((ROOT / "docs" / "protocol.schema.json").read_text(encoding="utf-8"))
    assert stored == protocol_schema(), (
        "regenerate: python -m service.protocol > docs/protocol.schema.json"
    )


def test_every_server_event_is_documented() -> None:
    page = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    for model in SERVER_EVENTS:
        assert f"`{model.model_fields['event'].default}`" in page


def test_server_frames_leave_out_empty_fields() -> None:
    frame = json.loads(AgentFinalAnswer(session_id="s", seq=3, content="x").to_json())
    assert set(frame) == {"event", "timestamp", "session_id", "seq", "content"}
    assert frame["timestamp"].endswith("Z")


def test_protocol_every_sdk_error_kind_has_its_wire_code() -> None:
    codes = {kind: run_error_code(kind) for kind in get_args(ErrorKind)}
    assert codes == {
        "agent_failed": ErrorCode.AGENT_FAILED,
        "tool_failed": ErrorCode.AGENT_FAILED,
        "llm_failed": ErrorCode.LLM_FAILED,
        "rate_limited": ErrorCode.RATE_LIMITED,
        "max_steps": ErrorCode.MAX_STEPS,
        "agent_busy": ErrorCode.AGENT_FAILED,
    }
