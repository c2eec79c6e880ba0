"""load_agent_factory(path): import an agent file and return a factory of fresh agents."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from agent_loader.errors import AgentLoadError
from myagent.agent.base import BaseAgent
from myagent.agent.toolcall import ToolCallAgent
from myagent.approval import Policy, check_policies

AgentFactory = Callable[[], BaseAgent]


@dataclass(frozen=True)
class AgentSpec:
    """A loaded agent: its name, its file, how to make one per session, and what the operator
    set for it: an approval policy per tool, and limits on what a session may use."""

    name: str
    factory: AgentFactory
    file: Path | None = None
    approvals: Mapping[str, Policy] = field(default_factory=dict)  # tool -> auto | ask | deny
    approval_timeout_s: float = 300.0
    budget: Mapping[str, int] = field(default_factory=dict)  # service.usage.LIMITS

    def check(self, sample: BaseAgent | None = None) -> None:
        """AgentLoadError if a tool named in `approvals` is not one of the agent's."""
        if not self.approvals:
            return
        sample = sample if sample is not None else self.factory()
        tools = sample.tools.names if isinstance(sample, ToolCallAgent) else []
        try:
            check_policies(self.approvals, tools)
        except ValueError as exc:
            where = f"{self.file}: " if self.file else ""
            raise AgentLoadError(f"{where}agent {self.name!r}: {exc}") from exc


def _module_name(path: Path) -> str:
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    return f"myagent_ws_agent_{path.stem}_{digest}"


def _where(exc: BaseException, path: Path) -> str:
    """` (line N)` of the deepest frame inside the agent file, if any."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f" (line {exc.lineno})"
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
    return f" (line {lines[-1]})" if lines else ""


def import_agent_file(path: Path) -> ModuleType:
    """Import the file under its own module name, its folder importable for sibling modules."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise AgentLoadError(f"agent file not found: {path}")
    if path.suffix != ".py":
        raise AgentLoadError(f"agent file must be a .py file: {path}")
    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - only for odd loaders
        raise AgentLoadError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise AgentLoadError(f"{path}{_where(exc, path)}: syntax error: {exc.msg}") from exc
    except Exception as exc:
        sys.modules.pop(name, None)
        raise AgentLoadError(
            f"{path}{_where(exc, path)}: importing the file raised {type(exc).__name__}: {exc}"
        ) from exc
    return module


def load_agent_factory(
    path: Path | str,
    name: str | None = None,
    *,
    approvals: Mapping[str, Policy] | None = None,
    approval_timeout_s: float = 300.0,
    budget: Mapping[str, int] | None = None,
) -> AgentSpec:
    """Load an agent file: `create_agent()` is called per session, else `agent` is deep-copied.
    A tool in `approvals` that the agent does not have is an AgentLoadError naming it."""
    path = Path(path).expanduser().resolve()
    module = import_agent_file(path)
    create = getattr(module, "create_agent", None)
    template = getattr(module, "agent", None)
    if callable(create):
        try:
            first = create()
        except Exception as exc:
            raise AgentLoadError(
                f"{path}{_where(exc, path)}: create_agent() raised {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(first, BaseAgent):
            raise AgentLoadError(
                f"{path}: create_agent() returned {type(first).__name__}, not an agent; "
                "return create_react_agent(...)"
            )
        factory: AgentFactory = create
        sample = first
    elif template is not None:
        if not isinstance(template, BaseAgent):
            raise AgentLoadError(
                f"{path}: `agent` is a {type(template).__name__}, not an agent; "
                "set agent = create_react_agent(...)"
            )
        try:
            template.model_copy(deep=True)
        except Exception as exc:
            raise AgentLoadError(
                f"{path}: the agent cannot be copied per session ({type(exc).__name__}: {exc}); "
                "define create_agent() instead of `agent`"
            ) from exc

        def factory() -> BaseAgent:
            return template.model_copy(deep=True)

        sample = template
    else:
        raise AgentLoadError(
            f"{path}: defines no agent; set `agent = create_react_agent(...)` "
            "or define `def create_agent():` at module level"
        )
    spec = AgentSpec(
        name=name or sample.name,
        factory=factory,
        file=path,
        approvals=dict(approvals or {}),
        approval_timeout_s=approval_timeout_s,
        budget=dict(budget or {}),
    )
    spec.check(sample)
    return spec
