"""The weather agent as an ADK app, for `adk api_server` (bench/peers)."""

from . import agent  # noqa: F401  # ADK finds `root_agent` here
