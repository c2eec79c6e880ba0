"""Tool approvals: a policy per tool (auto | ask | deny), and what a person answered.

The agent asks its approver (set by whoever runs it, e.g. the service) before an `ask` tool
runs; a refused or expired call does not run, and the model gets a result saying so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Policy = Literal["auto", "ask", "deny"]
Outcome = Literal["approved", "denied", "expired"]


class ApprovalRequest(BaseModel):
    """One tool call waiting for a person's answer."""

    model_config = ConfigDict(frozen=True)

    step_id: str
    tool: str
    args: dict[str, Any]


class Decision(BaseModel):
    """A person's answer to an ApprovalRequest (or its absence: expired)."""

    model_config = ConfigDict(frozen=True)

    outcome: Outcome
    reason: str | None = None

    @property
    def approved(self) -> bool:
        return self.outcome == "approved"

    def result_text(self, tool: str) -> str:
        """What the model is told instead of the tool's output."""
        why = f": {self.reason}" if self.reason else ""
        if self.outcome == "expired":
            return f"the call to {tool} was not run: no one approved it in time{why}"
        return f"the call to {tool} was not run: the user refused it{why}"


Approver = Callable[[ApprovalRequest], Awaitable[Decision]]
NO_APPROVER = Decision(outcome="denied", reason="no one is there to approve it")
DENIED_BY_POLICY = Decision(outcome="denied", reason="this tool is not allowed here")


def check_policies(policies: Mapping[str, str], tools: Collection[str]) -> None:
    """ValueError naming each tool of `policies` the agent does not have, or a bad policy."""
    unknown = sorted(set(policies) - set(tools))
    if unknown:
        known = ", ".join(sorted(tools)) or "none"
        raise ValueError(
            f"tools: the agent has no tool named {', '.join(map(repr, unknown))}; its tools: "
            f"{known}"
        )
    bad = sorted(name for name, policy in policies.items() if policy not in ("auto", "ask", "deny"))
    if bad:
        raise ValueError(f"tools: {', '.join(bad)}: approval must be auto, ask or deny")
