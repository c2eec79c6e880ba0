"""Lifecycle: one object that says whether this process takes new work, since when it runs,
and how many runs are going; /health, the upgrade handler, the session commands and the drain
read it."""

from __future__ import annotations

import time

from service.errors import ShuttingDown


class Lifecycle:
    """The process's state: serving, or draining (after SIGTERM) with a retry-after for clients."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.retry_after_s: float | None = None  # set once draining
        self.running = 0  # runs going in this process

    @property
    def draining(self) -> bool:
        return self.retry_after_s is not None

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self.started

    def drain(self, retry_after_s: float) -> bool:
        """Start draining; False if it already was."""
        if self.draining:
            return False
        self.retry_after_s = retry_after_s
        return True

    def refuse_new_work(self) -> None:
        """ShuttingDown while draining: runs going may finish, but nothing new starts here."""
        if self.retry_after_s is not None:
            retry = self.retry_after_s
            raise ShuttingDown(
                "the server is shutting down and starts no new session or run; reconnect "
                f"(another server, or this one once restarted) in {retry:g} s and resume",
                retry_after_s=retry,
            )
