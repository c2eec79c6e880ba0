"""Session: a cancel that comes before the run's task has taken its first step."""

from __future__ import annotations

import asyncio
import json

from prometheus_client import CollectorRegistry

from service.metrics import Metrics
from service.sessions import Session, SessionRegistry
from service.settings import SessionSettings
from tests.service.conftest import scripted


class Recorder:
    """A listener that keeps every frame it is given."""

    def __init__(self) -> None:
        self.frames: list[dict[str, object]] = []

    def deliver(self, data: str, event: str) -> None:
        self.frames.append(json.loads(data))


def new_session(**config: object) -> tuple[Session, Recorder, Metrics]:
    metrics = Metrics.create(CollectorRegistry())
    registry = SessionRegistry(metrics, SessionSettings.model_validate(config))
    session = registry.create("weather", "alice", scripted("first", "second")())
    listener = Recorder()
    session.attach(listener)
    return session, listener, metrics


def running_gauge(metrics: Metrics) -> float:
    return float(metrics.registry.get_sample_value("myagent_ws_running_sessions") or 0)


async def test_cancel_right_after_the_message_still_sends_interrupted() -> None:
    session, listener, metrics = new_session()
    session.submit("go", None)
    session.cancel_run()  # same tick: the run's task has not started yet
    assert session.task is not None
    await asyncio.wait_for(asyncio.gather(session.task, return_exceptions=True), 5)
    assert [f["event"] for f in listener.frames] == ["agent.interrupted"]
    assert running_gauge(metrics) == 0


async def test_interrupt_right_after_the_message_runs_the_newer_one() -> None:
    session, listener, metrics = new_session(multitask="interrupt")
    session.submit("one", None)
    session.submit("two", None)  # interrupts "one" before it has started
    async with asyncio.timeout(5):
        while not listener.frames or listener.frames[-1]["event"] != "agent.final_answer":
            assert session.task is not None
            await asyncio.gather(session.task, return_exceptions=True)
    events = [f["event"] for f in listener.frames if f["event"] != "agent.partial_answer"]
    assert events[0] == "agent.interrupted" and events[-1] == "agent.final_answer"
    assert listener.frames[-1]["content"] == "first"  # the script's first turn: "one" never ran
    assert running_gauge(metrics) == 0
