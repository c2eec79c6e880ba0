"""What a session is made of when it is saved, and the interface every state backend implements.

A backend keeps, per session: its record (identity, agent, owner and lease, fencing epoch, last
seq, run state), its agent's memory, and its event log. The owner changes them only through
`commit` (events, run state and memory in one atomic write), fenced by the epoch it was given by
`create` or `acquire`: a write from a former owner is refused, and the owner is told (`lost`).
Event writes are idempotent by seq, so a retried write never adds a second copy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

from pydantic import BaseModel, ConfigDict, Field

from service.metadata import UsageMeta

LostReason = Literal["fenced", "gone"]  # another replica owns it now / the record is gone


class Frame(NamedTuple):  # a tuple: made for every event, in a fraction of a dataclass's time
    """One event of a session's log, as sent: its seq, its JSON text and its event name."""

    seq: int
    data: str
    event: str


class PendingMessage(BaseModel):
    """A user.message waiting for the running run to end (multitask: enqueue)."""

    model_config = ConfigDict(frozen=True)

    content: str
    request_id: str | None = None


class AnsweredRequest(BaseModel):
    """A request_id seen in a session: the run it started, and that run's terminal seq (0:
    still going)."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    run_id: str
    terminal_seq: int = 0


class PendingApproval(BaseModel):
    """A tool call of the running run that waits for user.approve, until `deadline`."""

    model_config = ConfigDict(frozen=True)

    step_id: str
    tool: str
    args: dict[str, Any]
    timeout_s: float
    deadline: float  # time.time() when it expires: another replica reads it too


class RunState(BaseModel):
    """What is going in a session: saved at every run start and end, so an adopter knows."""

    model_config = ConfigDict(frozen=True)

    run_id: str | None = None  # the running run, if any
    request_id: str | None = None
    pending: tuple[PendingMessage, ...] = ()
    requests: tuple[AnsweredRequest, ...] = ()  # the last REMEMBERED_REQUESTS, oldest first
    approvals: tuple[PendingApproval, ...] = ()  # the running run's calls that wait for a person
    usage: UsageMeta = Field(default_factory=UsageMeta)  # the session's runs that ended, in all
    run_usage: UsageMeta | None = None  # the running run's so far (an adopter goes on from it)


class SessionRecord(BaseModel):
    """A session as the store holds it."""

    model_config = ConfigDict(frozen=True)

    session_id: str
    identity: str
    agent: str
    epoch: int = 0
    owner: str = ""  # the replica holding its lease ("" once released)
    last_seq: int = 0
    state: RunState = Field(default_factory=RunState)
    memory: str | None = None  # the agent's Memory as JSON (only from `acquire`)


@dataclass(frozen=True, slots=True)
class Page:
    """A slice of an event log: frames with seq > the asked one, and the log's bounds."""

    frames: tuple[Frame, ...]
    oldest_seq: int  # the oldest seq held (last_seq + 1 when none is)
    last_seq: int


@dataclass(frozen=True, slots=True)
class Held:
    """`acquire` found the session held by another replica whose lease still runs."""

    owner: str


class Owner(Protocol):
    """The session object of the replica that owns a session: told, in order, what the store
    did with its writes."""

    def written(self, seq: int) -> None:
        """Every frame up to `seq` is saved (deliver it now)."""

    def lost(self, reason: LostReason) -> None:
        """A write was refused: another replica owns the session now, or its record is gone."""

    def hurry(self) -> None:
        """The store stopped answering: send what waits for it without waiting any more."""


MemoryDump = Callable[[], str]  # the agent's memory as JSON, taken when the store saves it


class StateStore(Protocol):
    """Sessions, their memory and event logs: `memory`, `sqlite` or `redis` (service.state)."""

    name: str
    replica: str  # this process's id as an owner of sessions

    @property
    def status(self) -> str:
        """ok | degraded (not answering) | lost (it came back without its data)."""

    async def start(self) -> None: ...

    async def close(self) -> None:
        """Write what is queued (for a short while), then stop."""

    def create(self, record: SessionRecord, owner: Owner) -> None:
        """A new session owned here (record.epoch is its first epoch)."""

    def commit(
        self,
        session_id: str,
        epoch: int,
        frames: Sequence[Frame],
        state: RunState | None = None,
        memory: MemoryDump | None = None,
    ) -> None:
        """Queue one atomic write: new frames, and the run state and memory after them;
        `owner.written` or `owner.lost` follows, in order."""

    def release(self, session_id: str, epoch: int) -> None:
        """Give up the lease: any replica may adopt the session now."""

    def delete(self, session_id: str, epoch: int) -> None:
        """Forget the session, its memory and its log."""

    async def acquire(
        self, session_id: str, owner: Owner, *, gone: str = ""
    ) -> SessionRecord | Held | None:
        """Take the lease (a new epoch if the owner changes) and the record with its memory.

        Held if another replica's lease still runs, unless that replica is `gone` (found gone
        by the caller: its lease is overridden, but not the lease of one that took the session
        since); None if there is no such session.
        """

    async def peek(self, session_id: str) -> SessionRecord | None:
        """The record, without memory, or None."""

    async def read(self, session_id: str, after_seq: int, limit: int) -> Page | None:
        """Up to `limit` frames with seq > after_seq, in order; None if there is no session."""

    async def sync(self) -> None:
        """Wait until every write queued before this call is done (or refused)."""
