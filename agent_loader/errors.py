"""Errors of the agent loader.

AgentLoadError   the file is missing, does not import, or defines no usable agent; the
                 message names the file (and line) and says what to do
"""

from __future__ import annotations


class AgentLoadError(Exception):
    """An agent file cannot be served."""
