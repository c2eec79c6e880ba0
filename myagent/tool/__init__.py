"""Tools: BaseTool, ToolResult, ToolCollection, Terminate."""

from myagent.tool.base_tool import BaseTool, ToolResult
from myagent.tool.collection import ToolCollection
from myagent.tool.terminate import Terminate

__all__ = ["BaseTool", "Terminate", "ToolCollection", "ToolResult"]
