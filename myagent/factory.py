"""create_react_agent: the one call an agent file makes."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import structlog

from myagent.agent.toolcall import ToolCallAgent
from myagent.llm import LLM, ChatModel
from myagent.offline import OfflineLLM
from myagent.tool.base_tool import BaseTool
from myagent.tool.collection import ToolCollection, as_collection

log = structlog.get_logger("myagent")
OFFLINE_TOKEN_DELAY_S = 0.02  # the embedded default streams at a model's pace, visibly


def default_llm() -> ChatModel:
    """LLM over OPENAI_API_KEY / OPENAI_BASE_URL, or the offline model when no key is set."""
    if os.environ.get("OPENAI_API_KEY"):
        return LLM()
    log.warning(
        "offline_model_in_use",
        reason="OPENAI_API_KEY is not set; answers come from the deterministic offline "
        "model. Set OPENAI_API_KEY (and OPENAI_BASE_URL, OPENAI_MODEL) for a real one",
    )
    return OfflineLLM(token_delay_s=OFFLINE_TOKEN_DELAY_S)


def create_react_agent(
    name: str,
    tools: ToolCollection | Iterable[BaseTool] | None = None,
    system_prompt: str | None = None,
    next_step_prompt: str | None = None,
    max_steps: int = 10,
    enable_tracing: bool = False,
    llm: ChatModel | None = None,
    **kwargs: Any,
) -> ToolCallAgent:
    """A ReAct agent that calls these tools with this model (default: see `default_llm`)."""
    return ToolCallAgent(
        name=name,
        tools=as_collection(tools),
        system_prompt=system_prompt,
        next_step_prompt=next_step_prompt,
        max_steps=max_steps,
        enable_tracing=enable_tracing,
        llm=llm if llm is not None else default_llm(),
        **kwargs,
    )
