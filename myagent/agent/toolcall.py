"""ToolCallAgent: the model calls tools through the chat-completions tool API."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from pydantic import Field, PrivateAttr

from myagent.agent.react import ReActAgent
from myagent.events import AnswerDelta, ModelCalled, RunEvent, Thinking, ToolFinished, ToolStarted
from myagent.llm import AssistantTurn, closing_stream
from myagent.schema import Message, ToolCall
from myagent.tool.collection import ToolCollection
from myagent.tool.terminate import TERMINATE


class ToolCallAgent(ReActAgent):
    """Think: stream one model turn. Act: run the tool calls it asked for, feed results back."""

    tools: ToolCollection = Field(default_factory=ToolCollection)
    _pending: list[ToolCall] = PrivateAttr(default_factory=list)
    _prompts: dict[tuple[str, str], Message] = PrivateAttr(default_factory=dict)

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

    async def think(self) -> AsyncIterator[RunEvent]:
        self._pending = []  # calls of an interrupted run must not be run now
        yield Thinking(step=self.current_step, content=f"Step {self.current_step}: thinking")
        started = time.perf_counter()
        turn: AssistantTurn | None = None
        stream = self.llm.stream(self.llm_messages(), self.tools.to_params())
        async with closing_stream(stream):  # closes the HTTP response now
            async for item in stream:
                if isinstance(item, str):
                    yield AnswerDelta(content=item)
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
        calls, self._pending = self._pending, []
        for call in calls:
            name = call.function.name
            args, problem = parse_arguments(call.function.arguments)
            yield ToolStarted(step=self.current_step, step_id=call.id, tool=name, args=args)
            started = time.perf_counter()
            if problem is None:
                result = await self.tools.execute(name, args)
                output = "" if result.output is None else str(result.output)
                error = result.error
            else:
                output, error = None, problem
            self.memory.add(
                Message.tool(
                    f"Error: {error}" if error else (output or ""), tool_call_id=call.id, name=name
                )
            )
            yield ToolFinished(
                step=self.current_step,
                step_id=call.id,
                tool=name,
                status="failed" if error else "success",
                output=output,
                error=error,
                duration_s=time.perf_counter() - started,
            )
            if name == TERMINATE and error is None and self.tools.get(name):
                self.final_answer = output or ""
        self.close_pending_tool_calls("skipped")


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
