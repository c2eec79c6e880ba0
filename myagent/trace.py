"""Run traces: steps, tool calls, durations and token usage, readable as JSON."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from myagent.events import ModelCalled, RunFailed, ToolFinished, ToolStarted
from myagent.schema import Usage


class ToolTrace(BaseModel):
    step_id: str
    tool: str
    args: dict[str, Any]
    status: str = "running"
    duration_s: float = 0.0


class StepTrace(BaseModel):
    step: int
    llm_duration_s: float = 0.0
    usage: Usage = Field(default_factory=Usage)
    tool_calls: list[ToolTrace] = Field(default_factory=list)


class RunTrace(BaseModel):
    input: str
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    duration_s: float = 0.0
    outcome: str = "running"
    error: str | None = None
    steps: list[StepTrace] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)


class Trace(BaseModel):
    """Every run of one agent, oldest first."""

    runs: list[RunTrace] = Field(default_factory=list)

    def start(self, text: str) -> RunTrace:
        run = RunTrace(input=text)
        self.runs.append(run)
        return run


class RunRecorder:
    """Feeds one run's events into its RunTrace."""

    def __init__(self, run: RunTrace) -> None:
        self.run = run
        self._started = time.perf_counter()

    def step(self, number: int) -> StepTrace:
        if not self.run.steps or self.run.steps[-1].step != number:
            self.run.steps.append(StepTrace(step=number))
        return self.run.steps[-1]

    def record(self, event: object) -> None:
        if isinstance(event, ModelCalled):
            step = self.step(event.step)
            step.llm_duration_s += event.duration_s
            used = Usage(
                prompt_tokens=event.prompt_tokens, completion_tokens=event.completion_tokens
            )
            step.usage = step.usage + used
            self.run.usage = self.run.usage + used
        elif isinstance(event, ToolStarted):
            self.step(event.step).tool_calls.append(
                ToolTrace(step_id=event.step_id, tool=event.tool, args=event.args)
            )
        elif isinstance(event, ToolFinished):
            for call in self.step(event.step).tool_calls:
                if call.step_id == event.step_id:
                    call.status, call.duration_s = event.status, event.duration_s
        elif isinstance(event, RunFailed):
            self.run.error = event.error

    def finish(self, outcome: str) -> None:
        self.run.outcome = outcome
        self.run.duration_s = time.perf_counter() - self._started
