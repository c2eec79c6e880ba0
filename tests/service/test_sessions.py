"""Runs: a cancel that comes before the run's task has taken its first step."""

from __future__ import annotations

import asyncio
import json

from prometheus_client import CollectorRegistry

from agent_loader.loader import AgentSpec
from service.lifecycle import Lifecycle
from service.metrics import Metrics
from service.sessions import Session, SessionRegistry
from service.settings import SessionSettings
from service.state.memory import MemoryState
from tests.service.conftest import scripted


class Recorder:
    """A listener that keeps every frame it is given."""

    def __init__(self) -> None:
        self.frames: list[dict[str, object]] = []

    def deliver(self, data: str, event: str) -> None:
        self.frames.append(json.loads(data))


def new_session(**config: object) -> tuple[Session, Recorder, Metrics]:
    metrics = Metrics.create(CollectorRegistry())
    spec = AgentSpec(name="weather", factory=scripted("first", "second"))
    registry = SessionRegistry(
        MemoryState(max_events=100, max_bytes=1 << 20),
        {"weather": spec},
        SessionSettings.model_validate(config),
        metrics,
        Lifecycle(),
    )
    session = registry.create(spec, "alice")
    listener = Recorder()
    session.attach(listener)
    return session, listener, metrics


def running_gauge(metrics: Metrics) -> float:
    return float(metrics.registry.get_sample_value("myagent_ws_running_sessions") or 0)


async def test_cancel_right_after_the_message_still_sends_interrupted() -> None:
    session, listener, metrics = new_session()
    session.runs.submit("go", None)
    session.runs.cancel_run()  # same tick: the run's task has not started yet
    assert session.runs.task is not None
    await asyncio.wait_for(asyncio.gather(session.runs.task, return_exceptions=True), 5)
    assert [f["event"] for f in listener.frames] == ["agent.interrupted"]
    assert running_gauge(metrics) == 0


async def test_interrupt_right_after_the_message_runs_the_newer_one() -> None:
    session, listener, metrics = new_session(multitask="interrupt")
    session.runs.submit("one", None)
    session.runs.submit("two", None)  # interrupts "one" before it has started
    async with asyncio.timeout(5):
        while not listener.frames or listener.frames[-1]["event"] != "agent.final_answer":
            assert session.runs.task is not None
            await asyncio.gather(session.runs.task, return_exceptions=True)
    events = [f["event"] for f in listener.frames if f["event"] != "agent.partial_answer"]
    assert events[0] == "agent.interrupted" and events[-1] == "agent.final_answer"
    assert listener.frames[-1]["content"] == "first"  # the script's first turn: "one" never ran
    assert running_gauge(metrics) == 0
