"""What build_middlewares reads of the service: its settings, parsed (tokens, networks, origins),
and its collectors, as Protocols (service.settings.Settings and service.metrics.Metrics fit);
and the error for a stack that cannot be built."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from prometheus_client import Counter, Histogram

if TYPE_CHECKING:
    from middleware.client import Network
    from middleware.origin import AllowedOrigins
    from middleware.tokens import Token


class StackConfigError(ValueError):
    """The stack cannot be built as configured; the message says what to change."""


class AuthOptions(Protocol):
    @property
    def enabled(self) -> bool: ...
    @property
    def client_tokens(self) -> tuple[Token, ...]: ...
    @property
    def metrics_tokens(self) -> tuple[Token, ...]: ...


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
    def trusted_proxies(self) -> Sequence[Network]: ...
    @property
    def allowed_hosts(self) -> Sequence[str]: ...


class CorsOptions(Protocol):
    @property
    def allowed_origins(self) -> AllowedOrigins: ...


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
