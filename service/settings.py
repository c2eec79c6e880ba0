"""Settings: one frozen model; load_settings(): flags > MYAGENT_WS_* env > YAML > defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from middleware import MIDDLEWARES, check_names
from middleware.client import parse_network
from middleware.origin import AllowedOrigins, check_hosts
from middleware.tokens import Token, parse_token, parse_tokens
from service.agent_settings import AgentOptions
from service.config import describe, env_overrides, merge, read_yaml
from service.errors import ConfigError

DEFAULT_CONFIG = Path("config/server.yaml")  # the CLI's, relative to where it runs


def default_config() -> Path | None:
    """config/server.yaml in the current directory, if there is one."""
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def comma_list(value: Any) -> Any:
    """`a, b` (as an environment variable gives it) is the list [a, b]; a list stays."""
    if isinstance(value, str):
        return [entry.strip() for entry in value.split(",") if entry.strip()]
    return value


# The cycle collector's thresholds: a server holds every session's objects, and with CPython's
# default (700, 10, 10) it walks all of them in a full collection every few hundred turns; see
# docs/performance.md, "The garbage collector".
GC_THRESHOLD = (10_000, 10, 10)
GcCount = Annotated[int, Field(ge=1, le=2**31 - 1, strict=True)]  # a C int, not a bool
Network = Annotated[IPvAnyNetwork, BeforeValidator(parse_network, json_schema_input_type=str)]


def origins(value: Any) -> Any:
    """`https://a.example, *` or a list of them, parsed (ValueError naming a bad entry)."""
    return value if isinstance(value, AllowedOrigins) else AllowedOrigins.parse(comma_list(value))


Origins = Annotated[AllowedOrigins, BeforeValidator(origins, json_schema_input_type=list[str])]


class Section(BaseModel):
    # hide_input_in_errors: a validation error must not print the tokens it was given
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    heartbeat_s: float = Field(default=20.0, gt=0, description="WebSocket ping interval")
    idle_timeout_s: float = Field(
        default=0, ge=0, description="close (1000) a socket silent this long with no run; 0: never"
    )
    max_message_bytes: int = Field(
        default=1 << 20, ge=1024, description="client frames must be smaller; else close 1009"
    )
    send_queue_frames: int = Field(default=2000, ge=10, description="per-socket send queue")
    send_queue_bytes: int = Field(
        default=8 << 20, ge=64 << 10, description="per-socket send queue, in bytes of JSON"
    )
    shutdown_grace_s: float = Field(default=8.0, ge=0, description="runs may finish this long")
    trusted_proxies: list[Network] = Field(default_factory=list, description="X-Forwarded-For from")
    header_timeout_s: float = Field(default=10.0, gt=0, description="request head deadline")
    max_pending_per_address: int = Field(default=32, ge=1, description="heads not yet sent")
    max_pending: int = Field(default=256, ge=1, description="heads not yet sent, in all")
    allowed_hosts: list[str] = Field(default_factory=list, description="Host names, not loopback")
    gc_threshold: tuple[GcCount, GcCount, GcCount] = Field(
        default=GC_THRESHOLD, description="gc.set_threshold (CPython's default: 700, 10, 10)"
    )

    _split = field_validator("allowed_hosts", mode="before")(comma_list)

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        check_hosts(value)
        return value


class AgentEntry(Section, AgentOptions):
    name: str = Field(default="", max_length=128, description="default: the agent's own name")
    file: Path


class TokenEntry(Section):
    name: str | None = None
    token: str = Field(min_length=1, description="the token, or sha256:<hex> of it")


class AuthSettings(Section):
    enabled: bool = True
    tokens: list[TokenEntry | str] = Field(default_factory=list)
    metrics_token: str | None = None

    _split = field_validator("tokens", mode="before")(comma_list)
    _tokens: tuple[Token, ...] = PrivateAttr(default=())
    _metrics_tokens: tuple[Token, ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _parse(self) -> Self:
        """sha256: entries must be 64 hex digits (the error names the token, never its value)."""
        self._tokens = parse_tokens(self.tokens)
        if self.metrics_token:
            self._metrics_tokens = (parse_token(self.metrics_token, "metrics"),)
        return self

    @property
    def client_tokens(self) -> tuple[Token, ...]:
        """The tokens clients may present; none with auth off."""
        return self._tokens if self.enabled else ()

    @property
    def metrics_tokens(self) -> tuple[Token, ...]:
        return self._metrics_tokens

    @property
    def secrets(self) -> list[str]:
        """The plain token values, for the log's redaction (a sha256: entry holds none)."""
        return [t.secret for t in (*self._tokens, *self._metrics_tokens) if t.secret]


class RateLimitSettings(Section):
    http_per_s: float = Field(default=20.0, gt=0)
    http_burst: int = Field(default=40, ge=1)
    messages_per_s: float = Field(default=2.0, gt=0, description="user.message frames")
    messages_burst: int = Field(default=10, ge=1)
    frames_per_s: float = Field(default=20.0, gt=0, description="every other frame")
    frames_burst: int = Field(default=60, ge=1)
    violations_before_close: int = Field(default=200, ge=1)
    connections_per_identity: int = Field(default=100, ge=1)
    max_connections: int = Field(default=10000, ge=1)
    auth_failures_per_min: int = Field(default=30, ge=1)


class SessionSettings(Section):
    max_per_connection: int = Field(default=16, ge=1)
    max_message_chars: int = Field(
        default=32_000, ge=1, description="a longer user.message answers message_too_large"
    )
    on_disconnect: Literal["continue", "cancel"] = "continue"
    multitask: Literal["reject", "enqueue", "interrupt"] = "reject"
    retention_s: float = Field(default=300.0, ge=0)
    buffer_events: int = Field(default=2000, ge=10)
    buffer_bytes: int = Field(default=4 << 20, ge=1024)


class LoggingSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console", "auto"] = "auto"


class CorsSettings(Section):
    allowed_origins: Origins = Field(default_factory=AllowedOrigins)


class StateSettings(Section):
    redis_url: str | None = Field(
        default=None, description="redis://host:6379/0: replicas share sessions; empty: none"
    )
    sqlite_path: Path | None = Field(
        default=None, description="one process whose sessions survive restarts; empty: memory"
    )
    lease_s: float = Field(
        default=15.0,
        ge=1,
        description="with Redis: a replica that stops renewing loses its sessions this long after",
    )

    @field_validator("sqlite_path", mode="before")
    @classmethod
    def _empty_path_is_none(cls, value: Any) -> Any:
        return value or None

    @field_validator("redis_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return value or None

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        """redis-py refuses any other URL, with a traceback at start-up."""
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix:// (redis://host:6379/0)")
        return value

    @model_validator(mode="after")
    def _one_backend(self) -> StateSettings:
        if self.redis_url and self.sqlite_path is not None:
            raise ValueError("set redis_url (replicas) or sqlite_path (one process), not both")
        return self


class Settings(Section):
    """Everything the service reads from flags, env and YAML."""

    server: ServerSettings = Field(default_factory=ServerSettings)
    agents: list[AgentEntry] = Field(default_factory=list)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    middlewares: list[str] = Field(
        default_factory=lambda: ["auth", "rate_limit", "logging"],
        description="the middleware stack, outermost first (docs/middleware.md)",
        json_schema_extra={
            "items": {
                "anyOf": [
                    {"enum": list(MIDDLEWARES)},
                    {"pattern": "^[^:]+:[A-Za-z_][A-Za-z0-9_]*$"},
                ],
                "type": "string",
            }
        },
    )
    sessions: SessionSettings = Field(default_factory=SessionSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    cors: CorsSettings = Field(default_factory=CorsSettings)
    state: StateSettings = Field(default_factory=StateSettings)

    _split = field_validator("middlewares", mode="before")(comma_list)

    @field_validator("middlewares")
    @classmethod
    def _known_middlewares(cls, value: list[str]) -> list[str]:
        check_names(value)
        return value


def load_settings(
    config: Path | None = None,
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Build Settings from the YAML file (none: defaults only), env and flags."""
    env = os.environ if env is None else env
    path = config
    data = read_yaml(path, env) if path is not None else {}
    data = merge(data, env_overrides(env))
    data = merge(data, flags or {})
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(exc, str(path or "defaults, env and flags"))) from exc


def settings_schema() -> dict[str, Any]:
    """The JSON Schema of the YAML config (config/server.schema.json), for editors."""
    schema = Settings.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "myagent-ws server configuration"
    return schema


if __name__ == "__main__":  # python -m service.settings > config/server.schema.json
    import json

    print(json.dumps(settings_schema(), indent=2, ensure_ascii=False))
