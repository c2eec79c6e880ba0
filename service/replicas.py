"""Between replicas: the typed messages they exchange, and the two ends of a forwarded command.

A command for a session another replica holds is forwarded to it (`Forward`, carrying the
client's frame); that replica carries it out through the same service.commands path as its own
sockets' commands, for a RemoteCaller whose replies go back as `Deliver`. The run's events reach
the asking socket through the session's shared log, which its replica follows.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Literal, Protocol, assert_never

import structlog
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from service.commands import Commands
from service.errors import StoreUnavailable
from service.forwarding import Moved
from service.protocol import ClientEvent, ServerEvent, client_events
from service.replay import Caller
from service.sessions import Session
from service.state.base import Frame
from service.state.redis_bus import RedisBus
from service.state.redis_layout import answering

log = structlog.get_logger("myagent_ws.replicas")


ANSWER_WITHIN_S = 3.0  # for a forwarded command's Done; then the owner is asked if it is there


class Forward(BaseModel):
    """A client frame for a session the receiving replica holds; answered by `Done(id)`."""

    kind: Literal["forward"] = "forward"
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    frame: str  # the client event, as JSON
    identity: str
    reply_to: str  # the sending replica
    connection_id: str


class Deliver(BaseModel):
    """A frame for one socket of the receiving replica (a forwarded command's reply)."""

    kind: Literal["deliver"] = "deliver"
    connection_id: str
    data: str
    event: str
    session_id: str | None = None  # with seq: a frame of that session's log, sent again
    seq: int | None = None


class Done(BaseModel):
    """A forwarded command's one answer: carried out (its replies, sent before this, are on
    their way), or not, `held` false: the receiving replica no longer holds its session (a
    drain handed it over), so the sender takes the session and carries it out itself."""

    kind: Literal["done"] = "done"
    id: str
    held: bool = True


class Probe(BaseModel):
    """Is anyone there? (publishing it says how many replicas listen on that channel)"""

    kind: Literal["probe"] = "probe"


ReplicaMessage = Annotated[Forward | Deliver | Done | Probe, Field(discriminator="kind")]
replica_messages: TypeAdapter[ReplicaMessage] = TypeAdapter(ReplicaMessage)


class RemoteCaller:
    """A socket on another replica, as the commands here see it: its replies are collected,
    then sent back; it never attaches to a session here (its replica follows the log)."""

    local = False

    def __init__(self, message: Forward) -> None:
        self.identity = message.identity
        self.message = message
        self.replies: list[Deliver] = []

    def send(self, event: ServerEvent) -> None:
        self.deliver(event.to_json(), event.event)

    def deliver(self, data: str, event: str) -> None:
        self.replies.append(
            Deliver(connection_id=self.message.connection_id, data=data, event=event)
        )

    def redeliver(self, session_id: str, frame: Frame) -> None:
        self.replies.append(
            Deliver(
                connection_id=self.message.connection_id,
                data=frame.data,
                event=frame.event,
                session_id=session_id,
                seq=frame.seq,
            )
        )

    def check_room(self, session_id: str) -> None:
        return None  # its own replica checks

    def attach(self, session: Session, since: int | None = None) -> None:
        return None

    def detach(self, session: Session) -> None:
        return None

    def follow(self, session_id: str, position: int, running: bool) -> None:
        return None

    def unfollow(self, session_id: str) -> int | None:
        return None

    async def replay(self, frames: list[tuple[str, str]]) -> bool:
        return False


class Local(Caller, Protocol):
    """What Replicas needs of a socket of this process: its id, and a way to send it frames."""

    id: str


class Replicas:
    """Forwards commands to other replicas and carries out theirs (service.commands.Forwarder)."""

    def __init__(self, bus: RedisBus, commands: Commands) -> None:
        self.bus = bus
        self.commands = commands
        self.sockets: dict[str, Local] = {}  # this replica's sockets, by connection id
        self.unanswered: dict[str, asyncio.Future[bool]] = {}  # forwarded commands, by id
        bus.handler = self.receive

    async def forward(self, owner: str, frame: ClientEvent, caller: Caller) -> int:
        """1: the owner carried the command out; 0: it did not (it is gone, or it holds the
        session no more): the caller takes the session over and carries it out itself."""
        log.debug("command_forwarded", frame=frame.event, owner=owner)
        connection_id = getattr(caller, "id", "")
        message = Forward(
            frame=frame.model_dump_json(exclude_none=True),
            identity=caller.identity,
            reply_to=self.bus.replica,
            connection_id=connection_id,
        )
        done = self.unanswered[message.id] = asyncio.get_running_loop().create_future()
        try:
            async with answering():
                if not await self.bus.send(owner, message.model_dump_json()):
                    return 0  # nobody listens there: the owner is gone
            try:
                return int(await asyncio.wait_for(asyncio.shield(done), ANSWER_WITHIN_S))
            except TimeoutError:  # it stopped (drained, died) with the command, or it is stuck
                pass
        finally:
            self.unanswered.pop(message.id, None)
        if not await self.probe(owner):
            return 0
        log.warning("replica_not_answering", owner=owner, frame=frame.event)
        raise StoreUnavailable(
            "the server holding this session does not answer; send it again in a moment "
            "(with the same request_id, it is not run twice)",
            retry_after_s=1.0,
        )

    async def probe(self, owner: str) -> int:
        async with answering():
            return await self.bus.send(owner, Probe().model_dump_json())

    async def receive(self, raw: str) -> None:
        try:
            message = replica_messages.validate_json(raw)
        except ValidationError:
            log.warning("replica_message_invalid", size=len(raw))
            return
        log.debug("replica_message", kind=message.kind)
        match message:
            case Deliver(connection_id=connection_id, session_id=session_id, seq=seq):
                if (socket := self.sockets.get(connection_id)) is None:
                    return
                if session_id is not None and seq is not None:
                    socket.redeliver(session_id, Frame(seq, message.data, message.event))
                else:
                    socket.deliver(message.data, message.event)
            case Forward():
                await self.carry_out(message)
            case Done(id=answered, held=held):  # the command waiting for it goes on
                if (done := self.unanswered.get(answered)) is not None and not done.done():
                    done.set_result(held)
            case Probe():
                pass
            case _:
                assert_never(message)

    async def carry_out(self, message: Forward) -> None:
        """A command from a socket of another replica, through the same path as ours."""
        caller = RemoteCaller(message)
        try:
            await self.commands.handle(caller, client_events.validate_json(message.frame))
            replies: list[Deliver | Done] = [*caller.replies, Done(id=message.id)]
        except Moved:  # held here no more (a drain handed it over): the sender adopts it
            replies = [Done(id=message.id, held=False)]
        for reply in replies:
            try:
                async with answering():
                    await self.bus.send(message.reply_to, reply.model_dump_json(exclude_none=True))
            except StoreUnavailable:
                log.warning("replica_reply_lost", kind=reply.kind)
