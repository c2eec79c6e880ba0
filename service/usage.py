"""Usage and budgets: what a run and a session used (tokens, model and tool calls, time), and
the agent's limits on it (`budget:` in the config).

A run's meter sees every event of the run. Before a model call, a limit already reached ends
the run; after one, a token limit gone past ends it; a tool call past max_tool_calls_per_run
ends it before it runs. A session whose max_tokens_per_session is reached answers every later
user.message with budget_exceeded at once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from myagent.events import ModelCalled, RunEvent, Thinking, ToolStarted
from service.errors import ServiceError
from service.metadata import ErrorMeta, RunMeta, UsageMeta
from service.protocol import ErrorCode

LIMITS = (
    "max_tokens_per_session",
    "max_tokens_per_run",
    "max_model_calls_per_run",
    "max_tool_calls_per_run",
)


class BudgetExceeded(ServiceError):
    """A limit of the agent's budget was reached; `metadata` says which and how much."""

    code = ErrorCode.BUDGET_EXCEEDED
    metadata: ErrorMeta  # always set: which limit, its maximum and what was used

    def __init__(self, limit: str, maximum: int, used: int) -> None:
        super().__init__(
            f"this {'session' if limit.endswith('session') else 'run'} reached its budget: "
            f"{limit} is {maximum}, and {used} were used"
        )
        self.metadata = ErrorMeta(limit=limit, max=maximum, used=used)


def session_check(budget: Mapping[str, int], totals: UsageMeta) -> None:
    """BudgetExceeded if the session's token budget is used up (no new run may start)."""
    maximum = budget.get("max_tokens_per_session")
    if maximum is not None and totals.tokens >= maximum:
        raise BudgetExceeded("max_tokens_per_session", maximum, totals.tokens)


class RunMeter:
    """What one run used so far, against the budget; `see` raises BudgetExceeded."""

    def __init__(
        self, budget: Mapping[str, int], before: UsageMeta, carried: UsageMeta | None = None
    ) -> None:
        self.budget = budget
        self.before = before  # the session's runs before this one
        run = carried or UsageMeta()  # what the run used on the server that ran it before
        self.started = time.perf_counter() - run.duration_s
        self.prompt_tokens, self.completion_tokens = run.prompt_tokens, run.completion_tokens
        self.model_calls, self.tool_calls = run.model_calls, run.tool_calls
        self.step = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def usage(self) -> UsageMeta:
        return UsageMeta(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            model_calls=self.model_calls,
            tool_calls=self.tool_calls,
            duration_s=round(time.perf_counter() - self.started, 6),
        )

    def see(self, event: RunEvent) -> None:
        """Count an event; BudgetExceeded if the run must end before it goes further."""
        match event:
            case Thinking(step=step) if step > self.step:  # a step starts: a model call follows
                self.step = step
                self._check("max_model_calls_per_run", self.model_calls, at_most=False)
                self._check("max_tokens_per_run", self.tokens, at_most=False)
                self._check("max_tokens_per_session", self.before.tokens + self.tokens, False)
            case ModelCalled():
                self.model_calls += 1
                self.prompt_tokens += event.prompt_tokens
                self.completion_tokens += event.completion_tokens
                self._check("max_tokens_per_run", self.tokens, at_most=True)
                self._check("max_tokens_per_session", self.before.tokens + self.tokens, True)
            case ToolStarted():
                self.tool_calls += 1
                self._check("max_tool_calls_per_run", self.tool_calls, at_most=True)

    def _check(self, limit: str, used: int, at_most: bool) -> None:
        """`at_most`: `used` may equal the limit (it is spent); else it must stay under it
        (there is no room for more)."""
        maximum = self.budget.get(limit)
        if maximum is not None and (used > maximum if at_most else used >= maximum):
            raise BudgetExceeded(limit, maximum, used)


def with_usage(final: bool, meta: ErrorMeta | None, usage: UsageMeta) -> RunMeta | ErrorMeta:
    """The metadata of a run's last frame: its usage (and, for an error, what it had)."""
    if final:
        return RunMeta(usage=usage)
    return (meta or ErrorMeta()).model_copy(update={"usage": usage})
