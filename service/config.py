"""Where settings come from: the YAML file (with ${VAR} expanded, relative paths made absolute)
and MYAGENT_WS_* variables, merged into one tree for Settings to validate."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import yaml
from pydantic import ValidationError

from service.errors import ConfigError

ENV_PREFIX = "MYAGENT_WS_"
# Short environment names for the settings people set most; any other key is reachable as
# MYAGENT_WS_<SECTION>__<KEY>, e.g. MYAGENT_WS_SESSIONS__RETENTION_S=600.
ENV_ALIASES: dict[str, tuple[str, ...]] = {
    "HOST": ("server", "host"),
    "PORT": ("server", "port"),
    "TOKENS": ("auth", "tokens"),
    "METRICS_TOKEN": ("auth", "metrics_token"),
    "LOG_LEVEL": ("logging", "level"),
    "LOG_FORMAT": ("logging", "format"),
    "REDIS_URL": ("state", "redis_url"),
    "ALLOWED_ORIGINS": ("cors", "allowed_origins"),
    "ALLOWED_HOSTS": ("server", "allowed_hosts"),
    "MIDDLEWARES": ("middlewares",),
}


RAW_ENV = {  # taken as written, not as YAML scalars: strings, and comma lists
    ("server", "host"),
    ("auth", "tokens"),
    ("auth", "metrics_token"),
    ("state", "redis_url"),
    ("cors", "allowed_origins"),
    ("server", "allowed_hosts"),
    ("middlewares",),
}


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(value: Any, env: Mapping[str, str]) -> Any:
    """Expand ${VAR} and ${VAR:-default} in every string of a YAML document."""
    if isinstance(value, str):

        def repl(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env and env[name] != "":
                return env[name]
            if default is not None:
                return default
            raise ConfigError(
                f"${{{name}}} is used in the config but not set in the environment; "
                f"set it, or write ${{{name}:-default}}"
            )

        return _VAR.sub(repl, value)
    if isinstance(value, list):
        return [expand_env(v, env) for v in value]
    if isinstance(value, dict):
        return {k: expand_env(v, env) for k, v in value.items()}
    return value


def _set(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        node = tree.get(key)
        tree = tree.setdefault(key, {}) if not isinstance(node, dict) else node
    tree[path[-1]] = value


def env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """MYAGENT_WS_* variables as a nested dict (values parsed as YAML scalars)."""
    tree: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX) :]
        path = ENV_ALIASES.get(key) or tuple(part.lower() for part in key.split("__"))
        if len(path) < 2 and key not in ENV_ALIASES:
            continue
        _set(tree, path, raw if path in RAW_ENV else yaml.safe_load(raw))
    return tree


def merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        out[key] = (
            merge(out[key], value)
            if isinstance(value, Mapping) and isinstance(out.get(key), dict)
            else value
        )
    return out


def read_yaml(path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of sections (server:, agents:, ...)")
    data = expand_env(data, env)
    for agent in data.get("agents") or []:  # relative agent files are relative to the config
        if isinstance(agent, dict) and isinstance(agent.get("file"), str):
            agent["file"] = str((path.parent / agent["file"]).resolve())
    state = data.get("state")
    if (
        isinstance(state, dict)
        and isinstance(state.get("sqlite_path"), str)
        and state["sqlite_path"]
    ):
        state["sqlite_path"] = str((path.parent / state["sqlite_path"]).resolve())
    layers = data.get("middlewares")
    if isinstance(layers, list):  # so are middleware files (`file.py:Class`)
        data["middlewares"] = [relative_layer(entry, path.parent) for entry in layers]
    return cast(dict[str, Any], data)


def relative_layer(entry: Any, folder: Path) -> Any:
    if isinstance(entry, str) and ".py:" in entry:
        file, _, cls = entry.rpartition(":")
        return f"{(folder / file).resolve()}:{cls}"
    return entry


def describe(exc: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = (
            "unknown key; check the spelling against config/server.schema.json"
            if error["type"] == "extra_forbidden"
            else error["msg"]
        )
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)
