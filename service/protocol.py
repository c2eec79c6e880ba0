"""The wire protocol: one pydantic model per `event`, the ClientEvent union, ErrorCode.

Client frames are parsed once with `client_events.validate_json`; server frames are frozen
models serialised with `model_dump_json(exclude_none=True)`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from service.metadata import ApprovalMeta, ErrorMeta, RunMeta, ThinkingMeta, ToolMeta, UsageMeta

PROTOCOL_VERSION = "1.0"
ID_MAX = 128


class ErrorCode(StrEnum):
    """`agent.error` codes, for programs; the `error` sentence is for people."""

    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_EVENT = "unknown_event"
    SESSION_NOT_FOUND = "session_not_found"
    SESSION_BUSY = "session_busy"
    NO_ACTIVE_RUN = "no_active_run"
    TOO_MANY_SESSIONS = "too_many_sessions"
    RATE_LIMITED = "rate_limited"
    AGENT_FAILED = "agent_failed"
    LLM_FAILED = "llm_failed"
    MAX_STEPS = "max_steps"
    REPLAY_UNAVAILABLE = "replay_unavailable"
    RUN_LOST = "run_lost"
    MESSAGE_TOO_LARGE = "message_too_large"
    UNAVAILABLE = "unavailable"
    SHUTTING_DOWN = "shutting_down"
    NO_PENDING_APPROVAL = "no_pending_approval"
    BUDGET_EXCEEDED = "budget_exceeded"
    INTERNAL = "internal"


# --- client -> server -------------------------------------------------------------------------


class ClientFrame(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    request_id: str | None = Field(default=None, max_length=ID_MAX)


class UserCreateSession(ClientFrame):
    event: Literal["user.create_session"]
    agent: str | None = Field(default=None, max_length=ID_MAX)
    metadata: dict[str, Any] | None = None


class UserMessage(ClientFrame):
    event: Literal["user.message"]
    session_id: str = Field(min_length=1, max_length=ID_MAX)
    content: str = Field(min_length=1)


class UserCancel(ClientFrame):
    event: Literal["user.cancel"]
    session_id: str = Field(min_length=1, max_length=ID_MAX)


class UserResumeSession(ClientFrame):
    event: Literal["user.resume_session"]
    session_id: str = Field(min_length=1, max_length=ID_MAX)
    last_seq: int = Field(ge=0)


class UserCloseSession(ClientFrame):
    event: Literal["user.close_session"]
    session_id: str = Field(min_length=1, max_length=ID_MAX)


class UserPing(ClientFrame):
    event: Literal["user.ping"]


class UserApprove(ClientFrame):
    """A person's answer to an agent.approval_required."""

    event: Literal["user.approve"]
    session_id: str = Field(min_length=1, max_length=ID_MAX)
    step_id: str = Field(min_length=1, max_length=ID_MAX)
    approved: bool
    reason: str | None = Field(default=None, max_length=1000)


class UserGetUsage(ClientFrame):
    event: Literal["user.get_usage"]
    session_id: str = Field(min_length=1, max_length=ID_MAX)


CLIENT_FRAMES = (
    UserCreateSession,
    UserMessage,
    UserCancel,
    UserResumeSession,
    UserCloseSession,
    UserPing,
    UserApprove,
    UserGetUsage,
)
ClientEvent = Annotated[
    UserCreateSession
    | UserMessage
    | UserCancel
    | UserResumeSession
    | UserCloseSession
    | UserPing
    | UserApprove
    | UserGetUsage,
    Field(discriminator="event"),
]
client_events: TypeAdapter[ClientEvent] = TypeAdapter(ClientEvent)
CLIENT_EVENT_NAMES = frozenset(
    model.model_fields["event"].annotation.__args__[0]  # type: ignore[union-attr]
    for model in CLIENT_FRAMES
)


# --- server -> client -------------------------------------------------------------------------


def utcnow() -> datetime:
    return datetime.now(UTC)


class ServerEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    event: str
    timestamp: datetime = Field(default_factory=utcnow)
    request_id: str | None = None

    def to_json(self) -> str:
        """The frame as JSON text (`model_dump_json(exclude_none=True)`, minus its wrapper's
        cost: this runs for every event)."""
        return self.__pydantic_serializer__.to_json(self, exclude_none=True).decode()


class SessionEvent(ServerEvent):
    """An event of one session: numbered by `seq` (1, 2, ...) across runs and reconnects."""

    session_id: str
    seq: int = 0  # set by the session when it publishes the event
    run_id: str | None = None


class SystemConnected(ServerEvent):
    event: Literal["system.connected"] = "system.connected"
    connection_id: str
    protocol_version: str = PROTOCOL_VERSION
    agents: list[str]
    heartbeat_s: float


class SystemPong(ServerEvent):
    event: Literal["system.pong"] = "system.pong"


class SystemShutdown(ServerEvent):
    event: Literal["system.shutdown"] = "system.shutdown"
    retry_after_s: float


class AgentSessionCreated(SessionEvent):
    event: Literal["agent.session_created"] = "agent.session_created"
    agent: str


class AgentSessionResumed(ServerEvent):
    event: Literal["agent.session_resumed"] = "agent.session_resumed"
    session_id: str
    replayed: int
    last_seq: int


class AgentSessionClosed(ServerEvent):
    event: Literal["agent.session_closed"] = "agent.session_closed"
    session_id: str


class AgentThinking(SessionEvent):
    event: Literal["agent.thinking"] = "agent.thinking"
    content: str
    metadata: ThinkingMeta


class AgentToolCall(SessionEvent):
    event: Literal["agent.tool_call"] = "agent.tool_call"
    step_id: str
    metadata: ToolMeta


class AgentToolResult(SessionEvent):
    event: Literal["agent.tool_result"] = "agent.tool_result"
    step_id: str
    content: str
    metadata: ToolMeta


class AgentPartialAnswer(SessionEvent):
    event: Literal["agent.partial_answer"] = "agent.partial_answer"
    content: str


class AgentApprovalRequired(SessionEvent):
    """A tool call waits for user.approve (its agent.tool_call came first)."""

    event: Literal["agent.approval_required"] = "agent.approval_required"
    step_id: str
    metadata: ApprovalMeta
    timeout_s: float


class AgentFinalAnswer(SessionEvent):
    event: Literal["agent.final_answer"] = "agent.final_answer"
    content: str
    metadata: RunMeta | None = None


class AgentUsage(ServerEvent):
    event: Literal["agent.usage"] = "agent.usage"
    session_id: str
    totals: UsageMeta


class AgentInterrupted(SessionEvent):
    event: Literal["agent.interrupted"] = "agent.interrupted"


class AgentErrorEvent(ServerEvent):
    """An error: about a frame (no seq), or the end of a run (session_id, seq, run_id)."""

    event: Literal["agent.error"] = "agent.error"
    error: str
    code: ErrorCode
    retry_after_s: float | None = None
    session_id: str | None = None
    seq: int | None = None
    run_id: str | None = None
    oldest_seq: int | None = None
    metadata: ErrorMeta | None = None


SERVER_EVENTS: tuple[type[ServerEvent], ...] = (
    SystemConnected,
    SystemPong,
    SystemShutdown,
    AgentSessionCreated,
    AgentSessionResumed,
    AgentSessionClosed,
    AgentThinking,
    AgentToolCall,
    AgentToolResult,
    AgentApprovalRequired,
    AgentPartialAnswer,
    AgentFinalAnswer,
    AgentInterrupted,
    AgentErrorEvent,
    AgentUsage,
)


def protocol_schema() -> dict[str, Any]:
    """A JSON Schema of every frame, client and server (docs/protocol.schema.json)."""
    from pydantic.json_schema import models_json_schema

    models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        (m, "validation") for m in CLIENT_FRAMES
    ]
    models += [(m, "serialization") for m in SERVER_EVENTS]
    _, schema = models_json_schema(models, title="myagent-ws wire protocol " + PROTOCOL_VERSION)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


if __name__ == "__main__":  # python -m service.protocol > docs/protocol.schema.json
    import json

    print(json.dumps(protocol_schema(), indent=2, ensure_ascii=False))
