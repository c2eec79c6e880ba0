"""ReActAgent: each step thinks (asks the model) and then acts (runs what it asked for)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator

from myagent.agent.base import BaseAgent
from myagent.events import RunEvent
from myagent.llm import closing_stream


class ReActAgent(BaseAgent):
    """A step is `think()`, then `act()` when thinking decided to act."""

    @abstractmethod
    def think(self) -> AsyncIterator[RunEvent]:
        """Ask the model what to do; set `self.final_answer` or leave actions to `act()`."""

    @abstractmethod
    def act(self) -> AsyncIterator[RunEvent]:
        """Carry out what `think()` decided."""

    async def step(self) -> AsyncIterator[RunEvent]:
        async with closing_stream(self.think()) as thoughts:
            async for event in thoughts:
                yield event
        if self.final_answer is None:
            async with closing_stream(self.act()) as actions:
                async for event in actions:
                    yield event
