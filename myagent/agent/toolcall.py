"""ToolCallAgent: the model calls tools through the chat-completions tool API."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Collection
from typing import Any

from pydantic import Field, PrivateAttr, model_validator

from myagent.agent.react import ReActAgent
from myagent.approval import (
    DENIED_BY_POLICY,
    NO_APPROVER,
    ApprovalRequest,
    Approver,
    Decision,
    Policy,
    check_policies,
)
from myagent.events import (
    AnswerDelta,
    ApprovalRequired,
    ModelCalled,
    RunEvent,
    Thinking,
    ToolFinished,
    ToolStarted,
    ToolStatus,
)
from myagent.llm import AssistantTurn, closing_stream
from myagent.schema import Message, ToolCall
from myagent.tool.collection import ToolCollection
from myagent.tool.terminate import TERMINATE


class ToolCallAgent(ReActAgent):
    """Think: stream one model turn. Act: run the tool calls it asked for, feed results back."""

    tools: ToolCollection = Field(default_factory=ToolCollection)
    tool_approvals: dict[str, Policy] = Field(default_factory=dict)  # by tool; default auto
    _pending: list[ToolCall] = PrivateAttr(default_factory=list)
    _approver: Approver | None = PrivateAttr(default=None)
    _continued: set[str] | None = PrivateAttr(default=None)  # calls whose wait goes on
    _announced: set[str] = PrivateAttr(default_factory=set)
    _prompts: dict[tuple[str, str], Message] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _known_tools(self) -> ToolCallAgent:
        check_policies(self.tool_approvals, self.tools.names)  # a typo must not go unnoticed
        return self

    def llm_messages(self) -> list[Message]:
        messages = [self._prompt("system", self.system_prompt)] if self.system_prompt else []
        messages.extend(self.memory.messages)
        if self.next_step_prompt and self.current_step > 1:  # not kept in memory
            messages.append(self._prompt("step", self.next_step_prompt))
        return messages

    def _prompt(self, kind: str, text: str) -> Message:
        """The system or step prompt as a Message, made once per text (its JSON is kept)."""
        message = self._prompts.get((kind, text))
        if message is None:
            if len(self._prompts) > 8:  # prompts that change every time: keep only a few
                self._prompts.clear()
            make = Message.system if kind == "system" else Message.step_prompt
            message = self._prompts[(kind, text)] = make(text)
        return message

    def set_approver(self, approver: Approver | None) -> None:
        """Ask `approver` before every call of an `ask` tool (without one, such calls are
        refused)."""
        self._approver = approver

    def policy(self, tool: str) -> Policy:
        return self.tool_approvals.get(tool, "auto")

    def tool_params(self) -> list[dict[str, Any]]:
        """The tools offered to the model: every one but those under `deny`."""
        return [t.to_param() for t in self.tools if self.policy(t.name) != "deny"]

    def continue_run(self, waiting: Collection[str]) -> AsyncIterator[RunEvent]:
        """Go on with a run that was cut while these tool calls (step ids) waited for approval,
        e.g. on another server: they wait again (not announced again), the other calls of that
        turn get a result saying they were cut, then the run goes on as usual."""
        self._continued = set(waiting)
        return self.stream_run(None)

    def _go_on(self, waiting: set[str]) -> None:
        """The first step of a continued run: no model call; the waiting calls are acted on."""
        calls = self.memory.last_tool_calls()
        self._pending = [c for c in calls if c.id in waiting]
        self._announced = waiting
        for call in calls:
            if call.id not in waiting:
                self.memory.add(
                    Message.tool(
                        "Error: the server running this call stopped",
                        tool_call_id=call.id,
                        name=call.function.name,
                    )
                )

    async def think(self) -> AsyncIterator[RunEvent]:
        if self._continued is not None:
            waiting, self._continued = self._continued, None
            self._go_on(waiting)
            return
        self._pending = []  # calls of an interrupted run must not be run now
        yield Thinking(step=self.current_step, content=f"Step {self.current_step}: thinking")
        started = time.perf_counter()
        turn: AssistantTurn | None = None
        stream = self.llm.stream(self.llm_messages(), self.tool_params())
        async with closing_stream(stream):  # closes the HTTP response now
            async for item in stream:
                if isinstance(item, str):
                    yield AnswerDelta(item)
                else:
                    turn = item
        if turn is None:  # a ChatModel must end its stream with the whole turn
            raise RuntimeError(f"{type(self.llm).__name__}.stream() ended without a turn")
        yield ModelCalled(
            step=self.current_step,
            model=self.llm.model_name,
            duration_s=time.perf_counter() - started,
            prompt_tokens=turn.usage.prompt_tokens,
            completion_tokens=turn.usage.completion_tokens,
        )
        self.memory.add(Message.assistant(turn.content, turn.tool_calls))
        if turn.tool_calls:
            self._pending = list(turn.tool_calls)
            if turn.content:
                yield Thinking(step=self.current_step, content=turn.content)
        else:
            self.final_answer = turn.content or ""

    async def act(self) -> AsyncIterator[RunEvent]:
        """Run the pending calls in order. Every `ask` call is announced first (ToolStarted
        awaiting_approval, then ApprovalRequired), so a person sees them all; then each waits
        for its own answer when its turn comes (a continued run's were announced before)."""
        calls, self._pending = self._pending, []
        announced, self._announced = self._announced, set()
        parsed = [(call, *parse_arguments(call.function.arguments)) for call in calls]
        asks = {c.id for c, _, problem in parsed if problem is None and self.asks(c)}
        for call, args, _ in parsed:
            if call.id in asks and call.id not in announced:
                name, step = call.function.name, self.current_step
                yield ToolStarted(
                    step=step, step_id=call.id, tool=name, args=args, status="awaiting_approval"
                )
                yield ApprovalRequired(step=step, step_id=call.id, tool=name, args=args)
        for call, args, problem in parsed:
            name = call.function.name
            if call.id not in asks:
                yield ToolStarted(step=self.current_step, step_id=call.id, tool=name, args=args)
            started = time.perf_counter()
            decision = await self.decide(call, args) if problem is None else None
            status: ToolStatus = "success"
            output: str | None
            error: str | None
            if problem is not None:
                output, error = None, problem
            elif decision is not None and decision.outcome != "approved":
                output, error = None, decision.result_text(name)
                status = decision.outcome
            else:
                result = await self.tools.execute(name, args)
                output = "" if result.output is None else str(result.output)
                error = result.error
            if error and status == "success":
                status = "failed"
            self.memory.add(
                Message.tool(
                    f"Error: {error}" if error else (output or ""), tool_call_id=call.id, name=name
                )
            )
            yield ToolFinished(
                step=self.current_step,
                step_id=call.id,
                tool=name,
                status=status,
                output=output,
                error=error,
                duration_s=time.perf_counter() - started,
            )
            if name == TERMINATE and error is None and self.tools.get(name):
                self.final_answer = output or ""
        self.close_pending_tool_calls("skipped")

    def asks(self, call: ToolCall) -> bool:
        return self.policy(call.function.name) == "ask" and self._approver is not None

    async def decide(self, call: ToolCall, args: dict[str, Any]) -> Decision | None:
        """None: the call may run; else why it may not (refused, expired, or denied)."""
        policy = self.policy(call.function.name)
        if policy == "deny":  # the model was never offered it, but it may make one up
            return DENIED_BY_POLICY
        if policy == "auto":
            return None
        if self._approver is None:
            return NO_APPROVER
        request = ApprovalRequest(step_id=call.id, tool=call.function.name, args=args)
        return await self._approver(request)


def parse_arguments(text: str) -> tuple[dict[str, Any], str | None]:
    """The model's JSON arguments as a dict, or the reason they cannot be used."""
    try:
        args = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        return {
            "_raw": text
        }, f"the model sent invalid JSON arguments ({exc.msg}); send a JSON object"
    if not isinstance(args, dict):
        return {"_raw": text}, "the model sent arguments that are not a JSON object"
    return args, None
