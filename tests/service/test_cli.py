"""The console script: help, check, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_cli_help_lists_commands() -> None:
    out = run("--help")
    assert out.returncode == 0 and "server" in out.stdout and "check" in out.stdout
    assert "--port" in run("server", "--help").stdout


def test_cli_check_loads_the_example_agent() -> None:
    out = run("check", "examples/weather_agent.py")
    assert out.returncode == 0, out.stderr
    assert "ok: agent 'weather-assistant'" in out.stdout


def test_cli_check_bad_agent_exits_2_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("raise ValueError('boom')\n", encoding="utf-8")
    out = run("check", str(bad))
    assert out.returncode == 2
    assert "bad.py (line 1): importing the file raised ValueError: boom" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_cli_bad_config_exits_2_with_the_key(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("server:\n  port: high\n", encoding="utf-8")
    out = run("check", "--config", str(config), "examples/weather_agent.py")
    assert out.returncode == 2 and "server.port" in out.stderr


def test_cli_bad_redis_url_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("state:\n  redis_url: localhost:6379\n", encoding="utf-8")
    out = run("check", "--config", str(config), "examples/weather_agent.py")
    assert out.returncode == 2, out.stderr
    assert "state.redis_url" in out.stderr and "redis://" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
