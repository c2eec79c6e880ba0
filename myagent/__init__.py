"""myagent: a small agent SDK (ReAct over tool calls) that myagent-ws deploys."""

from myagent.agent.base import BaseAgent
from myagent.agent.react import ReActAgent
from myagent.agent.toolcall import ToolCallAgent
from myagent.factory import create_react_agent
from myagent.llm import LLM, AssistantTurn, ChatModel, ScriptedLLM
from myagent.memory import Memory
from myagent.offline import OfflineLLM
from myagent.schema import AgentState, Message, Role
from myagent.tool import BaseTool, Terminate, ToolCollection, ToolResult

__all__ = [
    "LLM",
    "AgentState",
    "AssistantTurn",
    "BaseAgent",
    "BaseTool",
    "ChatModel",
    "Memory",
    "Message",
    "OfflineLLM",
    "ReActAgent",
    "Role",
    "ScriptedLLM",
    "Terminate",
    "ToolCallAgent",
    "ToolCollection",
    "ToolResult",
    "create_react_agent",
]
