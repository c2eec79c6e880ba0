"""Errors of the service.

ServiceError            an error a client may see: a code (ErrorCode) and a sentence
├── SessionNotFound     unknown id, or another identity's session (never reveal which)
├── SessionBusy         a run is already going in this session
├── NoActiveRun         user.cancel with nothing running
├── TooManySessions     the per-connection session limit
├── ReplayUnavailable   resume asked for events no longer held
├── InvalidJson / InvalidMessage / UnknownEvent   a frame that is not a client event
├── MessageTooLarge     a user.message longer than sessions.max_message_chars
├── StoreUnavailable    Redis (the replicas' shared state) is unreachable; retry shortly
├── ShuttingDown        the server drains: no new session or run here; reconnect elsewhere
├── NoPendingApproval   user.approve for a call that waits for no answer (service.approvals)
├── BudgetExceeded      a limit of the agent's budget is reached (service.usage; metadata)
└── InternalError       a bug; the details are only in the log
ConfigError             the YAML / env / flags are wrong; the CLI prints it and exits 2
"""

from __future__ import annotations

from service.metadata import ErrorMeta
from service.protocol import ErrorCode


class ServiceError(Exception):
    code = ErrorCode.INTERNAL
    metadata: ErrorMeta | None = None  # what the code alone does not say (budget_exceeded)

    def __init__(
        self, message: str, *, retry_after_s: float | None = None, oldest_seq: int | None = None
    ) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.oldest_seq = oldest_seq


class SessionNotFound(ServiceError):
    code = ErrorCode.SESSION_NOT_FOUND


class SessionBusy(ServiceError):
    code = ErrorCode.SESSION_BUSY


class NoActiveRun(ServiceError):
    code = ErrorCode.NO_ACTIVE_RUN


class TooManySessions(ServiceError):
    code = ErrorCode.TOO_MANY_SESSIONS


class ReplayUnavailable(ServiceError):
    code = ErrorCode.REPLAY_UNAVAILABLE


class InvalidMessage(ServiceError):
    code = ErrorCode.INVALID_MESSAGE


class MessageTooLarge(ServiceError):
    code = ErrorCode.MESSAGE_TOO_LARGE


class InvalidJson(ServiceError):
    code = ErrorCode.INVALID_JSON


class UnknownEvent(ServiceError):
    code = ErrorCode.UNKNOWN_EVENT


class StoreUnavailable(ServiceError):
    code = ErrorCode.UNAVAILABLE


class ShuttingDown(ServiceError):
    code = ErrorCode.SHUTTING_DOWN


class InternalError(ServiceError):
    code = ErrorCode.INTERNAL


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and what to do."""
