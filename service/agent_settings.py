"""What the operator sets per agent in the config, besides its file: tool approvals, budget."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolEntry(_Section):
    approval: Literal["auto", "ask", "deny"] = Field(
        default="auto",
        description="auto: runs; ask: a person approves each call (user.approve); deny: never "
        "offered to the model",
    )


class BudgetSettings(_Section):
    """Limits on what the agent may use; reaching one ends the run with budget_exceeded."""

    max_tokens_per_session: int | None = Field(default=None, ge=1)
    max_tokens_per_run: int | None = Field(default=None, ge=1)
    max_model_calls_per_run: int | None = Field(default=None, ge=1)
    max_tool_calls_per_run: int | None = Field(default=None, ge=1)

    def limits(self) -> dict[str, int]:
        """The limits that are set, by name (service.usage.LIMITS)."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class AgentOptions(_Section):
    """The per-agent keys of `agents:` besides name and file."""

    tools: dict[str, ToolEntry] = Field(
        default_factory=dict, description="by tool name; a tool the agent lacks is an error"
    )
    approval_timeout_s: float = Field(
        default=300.0, gt=0, description="an unanswered approval expires after this long"
    )
    budget: BudgetSettings = Field(default_factory=BudgetSettings)

    def loader_options(self) -> dict[str, Any]:
        """These options as agent_loader.load_agent_factory takes them."""
        return {
            "approvals": {name: tool.approval for name, tool in self.tools.items()},
            "approval_timeout_s": self.approval_timeout_s,
            "budget": self.budget.limits(),
        }
