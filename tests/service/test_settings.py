"""YAML config: validation, ${VAR} expansion, relative paths, precedence, the JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from service.errors import ConfigError
from service.settings import default_config, load_settings, settings_schema

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "server.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_settings_unknown_key_is_refused_with_its_path(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  prot: 9000\n")
    with pytest.raises(ConfigError, match=r"server\.prot: unknown key"):
        load_settings(path, env={})


def test_settings_wrong_type_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "sessions:\n  max_per_connection: many\n")
    with pytest.raises(ConfigError, match=r"sessions\.max_per_connection: .*integer"):
        load_settings(path, env={})


def test_settings_expand_env_with_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  host: ${HOST_X:-0.0.0.0}\n  port: ${PORT_X}\n")
    settings = load_settings(path, env={"PORT_X": "9100"})
    assert (settings.server.host, settings.server.port) == ("0.0.0.0", 9100)
    with pytest.raises(ConfigError, match=r"\$\{PORT_X\} is used in the config but not set"):
        load_settings(path, env={})


def test_settings_agent_files_are_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "agents").mkdir()
    path = write(tmp_path, "agents:\n  - name: a\n    file: agents/a.py\n")
    assert load_settings(path, env={}).agents[0].file == tmp_path / "agents" / "a.py"


def test_settings_precedence_flags_over_env_over_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 1000\n  heartbeat_s: 5\nlogging:\n  level: error\n")
    env = {"MYAGENT_WS_PORT": "2000", "MYAGENT_WS_LOGGING__LEVEL": "warning"}
    settings = load_settings(path, {"server": {"port": 3000}}, env=env)
    assert settings.server.port == 3000  # flag
    assert settings.logging.level == "warning"  # env over YAML
    assert settings.server.heartbeat_s == 5  # YAML over default
    assert settings.sessions.max_per_connection == 16  # default
    assert load_settings(path, env=env).server.port == 2000


def test_settings_tokens_from_env_are_split() -> None:
    settings = load_settings(env={"MYAGENT_WS_TOKENS": "tok1, tok2"})
    assert [str(t) for t in settings.auth.tokens] == ["tok1", "tok2"]


def test_shipped_config_is_valid_and_matches_the_schema() -> None:
    config = ROOT / "config" / "server.yaml"
    load_settings(config, env={})
    schema = json.loads((ROOT / "config" / "server.schema.json").read_text(encoding="utf-8"))
    assert schema == settings_schema(), (
        "regenerate: python -m service.settings > config/server.schema.json"
    )
    document = yaml.safe_load(config.read_text(encoding="utf-8"))
    document["state"]["redis_url"] = None  # ${...} expands at load time
    document["server"]["host"] = "127.0.0.1"
    jsonschema.validate(document, schema)


def test_settings_without_a_file_read_none_the_cli_finds_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config").mkdir()
    write(tmp_path / "config", "server:\n  port: 9123\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings(None, env={}).server.port == 8080  # the working directory is no source
    assert default_config() == Path("config/server.yaml")  # the CLI's default, when present
    assert load_settings(default_config(), env={}).server.port == 9123


def test_business_config_sets_approvals_and_budget_and_matches_the_schema() -> None:
    config = ROOT / "config" / "business.yaml"
    entry = load_settings(config, env={}).agents[0]
    options = entry.loader_options()
    assert options["approvals"] == {
        "send_email": "ask", "query_database": "auto", "drop_table": "deny",
    }  # fmt: skip
    assert options["budget"]["max_tokens_per_session"] == 200000
    document = yaml.safe_load(config.read_text(encoding="utf-8"))
    schema = json.loads((ROOT / "config" / "server.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(document, schema)
    document["agents"][0]["tools"]["send_email"] = {"approval": "maybe"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, schema)
