"""The frames of one answered message, shaped like the service's, for the reference servers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

from service.text_frames import stamp


def now() -> str:
    """The time as the service writes it, formatted as cheaply as the service does (the date
    and time of day once a second): the reference servers must not pay more for a timestamp
    than the server they are the ceiling of (`datetime.isoformat` is ~15k instructions)."""
    return stamp()


class Session:
    """A session of a reference server: ids and seq numbering as the service does them."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex
        self.seq = 0

    def frame(self, event: str, **fields: object) -> str:
        self.seq += 1
        return json.dumps(
            {"event": event, "timestamp": now(), **fields, "session_id": self.id, "seq": self.seq},
            ensure_ascii=False,
            separators=(",", ":"),  # compact, as the service writes its frames
        )

    def created(self) -> str:
        return self.frame("agent.session_created", agent="bench")

    def answer(self, request_id: str | None, tokens: int, chunk: str = "xxxx") -> Iterator[str]:
        """thinking, tool_call, tool_result, thinking, `tokens` partial answers, final answer."""
        run = {"request_id": request_id, "run_id": uuid.uuid4().hex}
        output = chunk * tokens
        yield self.frame("agent.thinking", **run, content="Step 1: thinking", metadata={"step": 1})
        yield self.frame(
            "agent.tool_call",
            **run,
            step_id="call_1",
            metadata={
                "tool": "get_report",
                "args": {"topic": "report please"},
                "status": "running",
            },
        )
        yield self.frame(
            "agent.tool_result",
            **run,
            step_id="call_1",
            content=output,
            metadata={"tool": "get_report", "status": "success", "duration_s": 1e-05},
        )
        yield self.frame("agent.thinking", **run, content="Step 2: thinking", metadata={"step": 2})
        for _ in range(tokens):
            yield self.frame("agent.partial_answer", **run, content=chunk)
        yield self.frame("agent.final_answer", **run, content=output)


def connected() -> str:
    return json.dumps(
        {
            "event": "system.connected",
            "timestamp": now(),
            "connection_id": uuid.uuid4().hex,
            "protocol_version": "1.0",
            "agents": ["bench"],
            "heartbeat_s": 20.0,
        }
    )
