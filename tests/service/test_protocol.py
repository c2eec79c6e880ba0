"""The protocol's generated reference stays in step with the models."""

from __future__ import annotations

import json
from pathlib import Path

from service.protocol import SERVER_EVENTS, AgentFinalAnswer, protocol_schema

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
