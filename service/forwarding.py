"""What the commands need of the other replicas: the forwarder, a session one of them holds,
and the signal that a forwarded command's session moved on (service.replicas is the rest)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from service.protocol import ClientEvent
from service.state.base import SessionRecord

if TYPE_CHECKING:
    from service.replay import Caller


class Forwarder(Protocol):
    """Sends a command to the replica that holds its session (service.replicas)."""

    async def forward(self, owner: str, frame: ClientEvent, caller: Caller) -> int: ...

    async def probe(self, owner: str) -> int: ...


class Moved(Exception):  # a signal between replicas, not an error of anyone's
    """A forwarded command's session is no longer held by the replica it was sent to."""


@dataclass(frozen=True, slots=True)
class Remote:
    """A session held by another replica whose lease still runs."""

    record: SessionRecord
    owner: str
