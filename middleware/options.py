"""What the stack reads of the service: its settings and collectors, as Protocols it can be
given (service.settings.Settings and service.metrics.Metrics fit), and the error for a stack
that cannot be built."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from prometheus_client import Counter, Histogram


class StackConfigError(ValueError):
    """The stack cannot be built as configured; the message says what to change."""


class TokenLike(Protocol):
    @property
    def name(self) -> str | None: ...
    @property
    def token(self) -> str: ...


class AuthOptions(Protocol):
    @property
    def enabled(self) -> bool: ...
    @property
    def tokens(self) -> Sequence[TokenLike | str]: ...
    @property
    def metrics_token(self) -> str | None: ...


class LimitOptions(Protocol):
    @property
    def http_per_s(self) -> float: ...
    @property
    def http_burst(self) -> int: ...
    @property
    def messages_per_s(self) -> float: ...
    @property
    def messages_burst(self) -> int: ...
    @property
    def frames_per_s(self) -> float: ...
    @property
    def frames_burst(self) -> int: ...
    @property
    def violations_before_close(self) -> int: ...
    @property
    def connections_per_identity(self) -> int: ...
    @property
    def max_connections(self) -> int: ...
    @property
    def auth_failures_per_min(self) -> int: ...


class ServerOptions(Protocol):
    @property
    def host(self) -> str: ...
    @property
    def trusted_proxies(self) -> Sequence[str]: ...
    @property
    def allowed_hosts(self) -> Sequence[str]: ...


class CorsOptions(Protocol):
    @property
    def allowed_origins(self) -> Sequence[str]: ...


class StackSettings(Protocol):
    """What the stack reads of the service's settings (service.settings.Settings fits)."""

    @property
    def middlewares(self) -> Sequence[str]: ...
    @property
    def server(self) -> ServerOptions: ...
    @property
    def auth(self) -> AuthOptions: ...
    @property
    def rate_limit(self) -> LimitOptions: ...
    @property
    def cors(self) -> CorsOptions: ...


class StackMetrics(Protocol):
    """The collectors the stack counts into (service.metrics.Metrics fits)."""

    @property
    def http_requests_total(self) -> Counter: ...
    @property
    def http_request_duration_seconds(self) -> Histogram: ...
    @property
    def auth_failures_total(self) -> Counter: ...
    @property
    def rate_limited_total(self) -> Counter: ...
