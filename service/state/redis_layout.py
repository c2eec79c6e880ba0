"""The Redis dataset's layout (a hash, a stream and a string per session), how its entries read
back as records and frames, and the deadline a read of it must answer within."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from service.errors import StoreUnavailable
from service.state.base import Frame, RunState, SessionRecord
from service.state.writer import raise_if_cancelling

PREFIX = "myagent_ws"
INSTANCE_KEY = f"{PREFIX}:instance"  # set once per Redis dataset: gone means its data is gone
CALL_TIMEOUT_S = 1.0  # a command's read of the store (resume, adopt) waits this long at most
RETRY_AFTER_S = 1.0


def session_key(session_id: str) -> str:
    return f"{PREFIX}:session:{session_id}"


def events_key(session_id: str) -> str:
    return f"{PREFIX}:events:{session_id}"


def memory_key(session_id: str) -> str:
    return f"{PREFIX}:memory:{session_id}"


def keys_of(session_id: str) -> list[str]:
    return [session_key(session_id), events_key(session_id), memory_key(session_id)]


def stream_id(seq: int) -> str:
    return f"{seq}-0"


def frame_of(entry_id: str, fields: dict[str, str]) -> Frame:
    return Frame(int(entry_id.partition("-")[0]), fields["d"], fields["t"])


def record_of(session_id: str, fields: dict[str, str], memory: str | None = None) -> SessionRecord:
    state = fields.get("state")
    return SessionRecord(
        session_id=session_id,
        identity=fields.get("identity", ""),
        agent=fields.get("agent", ""),
        epoch=int(fields.get("epoch", 0)),
        owner=fields.get("owner", ""),
        last_seq=int(fields.get("last_seq", 0)),
        state=RunState.model_validate_json(state) if state else RunState(),
        memory=memory or None,
    )


@contextlib.asynccontextmanager
async def answering(within_s: float = CALL_TIMEOUT_S) -> AsyncIterator[None]:
    """A call that must answer quickly; Redis away or stalled is StoreUnavailable."""
    try:
        async with asyncio.timeout(within_s):
            yield
    except StoreUnavailable:
        raise
    except Exception as exc:  # redis.exceptions.RedisError, OSError, TimeoutError
        raise_if_cancelling()
        raise StoreUnavailable(
            "the shared session store (Redis) does not answer, so this session cannot be "
            "reached now; retry in a moment",
            retry_after_s=RETRY_AFTER_S,
        ) from exc
