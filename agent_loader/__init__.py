"""Loads agent files: `agent = ...` or `create_agent()`."""

from agent_loader.errors import AgentLoadError
from agent_loader.loader import AgentFactory, AgentSpec, load_agent_factory

__all__ = ["AgentFactory", "AgentLoadError", "AgentSpec", "load_agent_factory"]
