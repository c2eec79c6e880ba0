"""Agent files: `agent`, `create_agent()`, sibling imports, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_loader import AgentLoadError, load_agent_factory

AGENT = """
from myagent import create_react_agent
from myagent.offline import OfflineLLM
{extra}
agent = create_react_agent(name="{name}", tools=[], llm=OfflineLLM())
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_loader_agent_variable_gives_independent_copies(tmp_path: Path) -> None:
    spec = load_agent_factory(write(tmp_path, "a.py", AGENT.format(extra="", name="alpha")))
    first, second = spec.factory(), spec.factory()
    assert spec.name == "alpha" and first is not second
    assert first.memory is not second.memory


def test_loader_create_agent_is_called_per_session(tmp_path: Path) -> None:
    text = (
        AGENT.format(extra="", name="x") + "\ncalls = []\ndef create_agent():\n"
        "    calls.append(1)\n    return agent.model_copy(deep=True)\n"
    )
    spec = load_agent_factory(write(tmp_path, "b.py", text), name="beta")
    spec.factory()
    spec.factory()
    assert spec.name == "beta"


def test_loader_sibling_modules_are_importable(tmp_path: Path) -> None:
    write(tmp_path, "helpers_for_agent.py", "NAME = 'from-sibling'\n")
    extra = "from helpers_for_agent import NAME"
    text = AGENT.format(extra=extra, name="x").replace('name="x"', "name=NAME")
    assert load_agent_factory(write(tmp_path, "c.py", text)).name == "from-sibling"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x = 1\n", r"defines no agent; set `agent = create_react_agent"),
        ("agent = 42\n", r"`agent` is a int, not an agent"),
        ("def f(:\n", r"bad\.py \(line 1\): syntax error"),
        (
            "\n\nraise RuntimeError('no key')\n",
            r"bad\.py \(line 3\): importing the file raised RuntimeError: no key",
        ),
        ("import not_a_module_xyz\n", r"ModuleNotFoundError"),
    ],
)
def test_loader_errors_name_the_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(AgentLoadError, match=message):
        load_agent_factory(write(tmp_path, "bad.py", text))


def test_loader_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AgentLoadError, match=r"agent file not found: .*nope\.py"):
        load_agent_factory(tmp_path / "nope.py")


BUSINESS = Path(__file__).resolve().parents[2] / "examples" / "business_agent.py"


def test_loader_keeps_tool_policies_and_refuses_a_tool_the_agent_lacks() -> None:
    spec = load_agent_factory(BUSINESS, approvals={"send_email": "ask", "drop_table": "deny"})
    assert dict(spec.approvals) == {"send_email": "ask", "drop_table": "deny"}
    with pytest.raises(AgentLoadError, match="no tool named 'send_mail'") as caught:
        load_agent_factory(BUSINESS, approvals={"send_mail": "ask"})
    assert "business_agent.py" in str(caught.value) and "send_email" in str(caught.value)
