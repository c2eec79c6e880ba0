"""BaseAgent: state, memory, max_steps, and the run loop that streams events."""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Self

import structlog
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from myagent.errors import (
    AgentBusyError,
    LLMError,
    LLMRateLimitError,
    MaxStepsError,
    MyAgentError,
)
from myagent.events import Answer, RunEvent, RunFailed
from myagent.llm import ChatModel, closing_stream
from myagent.memory import Memory
from myagent.schema import AgentState, Message
from myagent.trace import RunRecorder, Trace

log = structlog.get_logger("myagent.agent")
StepCallback = Callable[[Any], Awaitable[None]]


class BaseAgent(BaseModel):
    """An agent: a model, a memory and a loop of steps until a final answer.

    Subclasses implement `step()`, an async generator of events that sets `self.final_answer`
    when the run is done.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, validate_assignment=False)

    name: str
    description: str = ""
    system_prompt: str | None = None
    next_step_prompt: str | None = None
    llm: ChatModel
    memory: Memory = Field(default_factory=Memory)
    state: AgentState = AgentState.IDLE
    max_steps: int = Field(default=10, ge=1)
    current_step: int = 0
    enable_tracing: bool = False
    trace: Trace = Field(default_factory=Trace)

    final_answer: str | None = None
    _step_callback: StepCallback | None = PrivateAttr(default=None)
    _failure: MyAgentError | None = PrivateAttr(default=None)

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        """A copy with its own memory, state and trace that shares the model and callback.

        The model holds an HTTP client, which cannot be copied; the callback may be bound to
        an object (a socket) that cannot either.
        """
        memo = {} if memo is None else memo
        for shared in (self.llm, self._step_callback, self._failure):
            if shared is not None:
                memo[id(shared)] = shared
        return super().__deepcopy__(memo)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        if deep and update:  # pydantic copies field by field here, bypassing __deepcopy__
            return self.__deepcopy__().model_copy(update=update)
        return super().model_copy(update=update, deep=deep)

    def set_step_callback(self, callback: StepCallback | None) -> None:
        """Call `callback(event)` for every event of every run, before it is yielded."""
        self._step_callback = callback

    @abstractmethod
    def step(self) -> AsyncIterator[RunEvent]:
        """One think/act step; set `self.final_answer` when the run is done."""

    def close_pending_tool_calls(self, reason: str) -> None:
        """Give every tool call still without a result one, so memory stays valid."""
        for call_id, name in self.memory.pending_tool_calls():
            self.memory.add(Message.tool(f"Error: {reason}", tool_call_id=call_id, name=name))

    async def arun(self, text: str) -> str:
        """Run one user message to its final answer; raise the run's MyAgentError if it fails."""
        answer: str | None = None
        async with closing_stream(self.stream_run(text)) as events:
            async for event in events:
                if isinstance(event, Answer):
                    answer = event.content
                elif isinstance(event, RunFailed):
                    raise self._failure or MyAgentError(f"{event.code}: {event.error}")
        if answer is None:  # pragma: no cover - stream_run always ends with Answer or RunFailed
            raise MyAgentError("the run ended without an answer")
        return answer

    async def stream_run(self, text: str | None) -> AsyncIterator[RunEvent]:
        """Run one user message, yielding events; the last one is Answer or RunFailed.

        `text` None goes on from the memory as it is, adding no message (a continued run).

        Consume it with `contextlib.aclosing` (or to its end): a stream left open keeps the
        agent RUNNING. Cancelling or closing it mid-run leaves the agent IDLE, with a result
        for every tool call in memory, ready for the next message.
        """
        if self.state is AgentState.RUNNING:
            raise AgentBusyError(f"agent {self.name!r} is already running; copy it per session")
        self.state = AgentState.RUNNING
        self.current_step = 0
        self.final_answer = None
        self._failure = None
        recorder = RunRecorder(self.trace.start(text or "")) if self.enable_tracing else None
        if text is not None:
            self.memory.add(Message.user(text))
        outcome = "interrupted"
        ended: Answer | RunFailed | None = None
        try:
            while self.final_answer is None:
                if self.current_step >= self.max_steps:
                    raise MaxStepsError(
                        f"the agent used all {self.max_steps} steps without a final answer; "
                        "raise max_steps or simplify the request"
                    )
                self.current_step += 1
                observed = recorder is not None or self._step_callback is not None  # once a step
                async with closing_stream(self.step()) as events:
                    async for event in events:
                        if observed:
                            await self._emit(event, recorder)
                        yield event
            ended = Answer(content=self.final_answer)
            self.state, outcome = AgentState.FINISHED, "finished"
        except MyAgentError as exc:
            self.close_pending_tool_calls(str(exc))
            ended = self._failed(exc)
            self.state, outcome = AgentState.ERROR, "error"
        except (asyncio.CancelledError, GeneratorExit):
            self.close_pending_tool_calls("cancelled by the user")
            self.state = AgentState.IDLE
            raise
        except BaseException:
            self.close_pending_tool_calls("the run crashed")
            self.state, outcome = AgentState.ERROR, "error"
            raise
        finally:
            if recorder is not None and ended is None:  # interrupted, or a bug
                recorder.finish(outcome)
        assert ended is not None  # every path above set it or raised
        try:
            await self._emit(ended, recorder)
        finally:
            if recorder is not None:
                recorder.finish(outcome)
        yield ended  # the run is over: closing the stream after this changes nothing

    def _failed(self, exc: MyAgentError) -> RunFailed:
        self._failure = exc
        retry = exc.retry_after_s if isinstance(exc, LLMRateLimitError) else None
        code = "rate_limited" if retry is not None else exc.code
        if not isinstance(exc, LLMError | MaxStepsError):
            log.warning("run_failed", agent=self.name, code=code)
        return RunFailed(error=str(exc), code=code, retry_after_s=retry)

    async def _emit(self, event: RunEvent, recorder: RunRecorder | None) -> None:
        if recorder is not None:
            recorder.record(event)
        if self._step_callback is not None:
            await self._step_callback(event)

    def reset(self) -> None:
        """Forget the conversation and return to IDLE."""
        self.memory.clear()
        self.state = AgentState.IDLE
        self.current_step = 0
        self.final_answer = None
