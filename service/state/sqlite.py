"""The SQLite backend: one process, no Redis; sessions, memory and event logs survive a restart.

One file (`state.sqlite_path`), used by one process at a time (a lock file says so at start),
in WAL mode with synchronous=NORMAL: a write is on disk when the process is killed, but may be
lost if the machine loses power. Every call runs in one worker thread with one connection.
When the process starts, no earlier process can be running on the file, so every session in it
is left by its owner and may be adopted.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from service.errors import ConfigError
from service.state.base import Frame, Held, Owner, Page, RunState, SessionRecord
from service.state.writer import Health, Op, QueuedWrites, Result

T = TypeVar("T")
SWEEP_EVERY_S = 30.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, identity TEXT NOT NULL, agent TEXT NOT NULL, epoch INTEGER NOT NULL,
    owner TEXT NOT NULL, last_seq INTEGER NOT NULL, oldest_seq INTEGER NOT NULL,
    log_bytes INTEGER NOT NULL, state TEXT NOT NULL, memory TEXT, expires_at REAL
);
CREATE TABLE IF NOT EXISTS events (
    session_id TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL, event TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
"""
COLUMNS = "identity, agent, epoch, owner, last_seq, state"


class SqliteState(QueuedWrites):
    """Sessions in one SQLite file; writes queued and committed in batches by one task."""

    name = "sqlite"

    def __init__(self, path: Path, *, retention_s: float, max_events: int, max_bytes: int) -> None:
        self.path = path
        self.replica = uuid.uuid4().hex
        self.retention_s = retention_s
        self.max_events, self.max_bytes = max_events, max_bytes
        super().__init__(Health("sqlite"))
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite")
        self.db: sqlite3.Connection | None = None
        self.lock_fd: int | None = None
        self.sweeper: asyncio.Task[None] | None = None

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            assert self.db is not None
            return fn(self.db)

        return await asyncio.get_running_loop().run_in_executor(self.thread, run)

    def lock(self) -> None:
        """One process a file: a second one would run the sessions of the first."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(
                f"state.sqlite_path {self.path} is in use by another process; each process "
                "needs its own file (several replicas share state through state.redis_url)"
            ) from None
        self.lock_fd = fd

    async def start(self) -> None:
        self.lock()

        def open_db() -> sqlite3.Connection:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
            # no earlier process runs on this file now: its sessions are left to adopt
            db.execute(
                "UPDATE sessions SET owner = '', expires_at = ? WHERE owner != ''",
                (time.time() + self.retention_s,),
            )
            return db

        self.db = await asyncio.get_running_loop().run_in_executor(self.thread, open_db)
        self.writer.start()
        self.sweeper = asyncio.create_task(self.sweep_forever(), name="sqlite-sweeper")

    async def close(self) -> None:
        await self.writer.close()
        if self.sweeper is not None:
            self.sweeper.cancel()
            await asyncio.gather(self.sweeper, return_exceptions=True)
        if self.db is not None:
            await self.call(lambda db: db.close())
        self.thread.shutdown(wait=True)
        if self.lock_fd is not None:
            os.close(self.lock_fd)

    # --- writes ---------------------------------------------------------------------------

    async def _flush(self, ops: Sequence[Op]) -> list[Result]:
        return await self.call(lambda db: self.apply(db, ops))

    def apply(self, db: sqlite3.Connection, ops: Sequence[Op]) -> list[Result]:
        results: list[Result] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for op in ops:
                results.append(self.apply_one(db, op))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return results

    def apply_one(self, db: sqlite3.Connection, op: Op) -> Result:
        if op.kind == "create":
            record = op.record
            assert record is not None
            db.execute(
                "INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, NULL, NULL)",
                (record.session_id, record.identity, record.agent, record.epoch, self.replica,
                 record.last_seq, record.last_seq + 1, record.state.model_dump_json()),
            )  # fmt: skip
            return 0
        row = db.execute(
            "SELECT epoch, last_seq, oldest_seq, log_bytes FROM sessions WHERE id = ?",
            (op.session_id,),
        ).fetchone()
        if row is None:
            return "gone"
        epoch, last, oldest, size = row
        if epoch != op.epoch:
            return "fenced"
        if op.kind == "release":
            db.execute(
                "UPDATE sessions SET owner = '', expires_at = ? WHERE id = ?",
                (time.time() + self.retention_s, op.session_id),
            )
            return 0
        if op.kind == "delete":
            db.execute("DELETE FROM sessions WHERE id = ?", (op.session_id,))
            db.execute("DELETE FROM events WHERE session_id = ?", (op.session_id,))
            return 0
        new = [f for f in op.frames if f.seq > last]
        db.executemany(
            "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?)",
            [(op.session_id, f.seq, f.data, f.event) for f in new],
        )
        last = new[-1].seq if new else last
        size += sum(len(f.data) for f in new)
        oldest, size = self.trim(db, op.session_id, oldest, last, size)
        db.execute(
            "UPDATE sessions SET last_seq = ?, oldest_seq = ?, log_bytes = ?,"
            " state = COALESCE(?, state), memory = COALESCE(?, memory) WHERE id = ?",
            (last, oldest, size, op.state.model_dump_json() if op.state else None, op.memory,
             op.session_id),
        )  # fmt: skip
        return int(last)

    def trim(
        self, db: sqlite3.Connection, session_id: str, oldest: int, last: int, size: int
    ) -> tuple[int, int]:
        """Drop the oldest events past sessions.buffer_events or buffer_bytes (keep the newest)."""
        while last - oldest + 1 > 1 and (
            last - oldest + 1 > self.max_events or size > self.max_bytes
        ):
            cut = max(1, min(last - oldest + 1 - self.max_events, 256))
            rows = db.execute(
                "SELECT seq, length(data) FROM events WHERE session_id = ? AND seq >= ?"
                " ORDER BY seq LIMIT ?",
                (session_id, oldest, cut),
            ).fetchall()
            if not rows:
                break
            upto = rows[-1][0]
            db.execute("DELETE FROM events WHERE session_id = ? AND seq <= ?", (session_id, upto))
            size -= sum(length for _, length in rows)
            oldest = upto + 1
        return oldest, size

    # --- reads ----------------------------------------------------------------------------

    async def acquire(
        self, session_id: str, owner: Owner, *, gone: str = ""
    ) -> SessionRecord | Held | None:
        def take(db: sqlite3.Connection) -> SessionRecord | Held | None:
            row = db.execute(
                f"SELECT {COLUMNS}, memory FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
            if row is None:
                return None
            if row[3] not in ("", self.replica, gone):
                return Held(row[3])
            epoch = row[2] + 1  # every acquire fences the writes before it
            db.execute(
                "UPDATE sessions SET epoch = ?, owner = ?, expires_at = NULL WHERE id = ?",
                (epoch, self.replica, session_id),
            )
            return self.record(session_id, (*row[:2], epoch, self.replica, *row[4:6]), row[6])

        result = await self.call(take)
        if isinstance(result, SessionRecord):
            self.owners.hold(session_id, result.epoch, owner)
        return result

    def record(
        self, session_id: str, row: Sequence[Any], memory: str | None = None
    ) -> SessionRecord:
        identity, agent, epoch, owner, last_seq, state = row
        return SessionRecord(
            session_id=session_id, identity=identity, agent=agent, epoch=epoch, owner=owner,
            last_seq=last_seq, state=RunState.model_validate_json(state), memory=memory,
        )  # fmt: skip

    async def peek(self, session_id: str) -> SessionRecord | None:
        row = await self.call(
            lambda db: db.execute(
                f"SELECT {COLUMNS} FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
        )
        return None if row is None else self.record(session_id, row)

    async def read(self, session_id: str, after_seq: int, limit: int) -> Page | None:
        def page(db: sqlite3.Connection) -> Page | None:
            row = db.execute(
                "SELECT last_seq, oldest_seq FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
            if row is None:
                return None
            rows = db.execute(
                "SELECT seq, data, event FROM events WHERE session_id = ? AND seq > ?"
                " ORDER BY seq LIMIT ?",
                (session_id, after_seq, limit),
            ).fetchall()
            return Page(tuple(Frame(*r) for r in rows), row[1], row[0])

        return await self.call(page)

    async def sweep_forever(self) -> None:
        """Delete the sessions left by their owners past sessions.retention_s."""
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            await self.writer.sync()  # behind every queued write

            def sweep(db: sqlite3.Connection) -> None:
                now = time.time()
                db.execute(
                    "DELETE FROM events WHERE session_id IN (SELECT id FROM sessions"
                    " WHERE owner = '' AND expires_at < ?)",
                    (now,),
                )
                db.execute("DELETE FROM sessions WHERE owner = '' AND expires_at < ?", (now,))

            await self.call(sweep)
