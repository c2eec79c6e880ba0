"""Metrics: every collector of the service, on the registry it is given (one per app)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    active_connections: Gauge
    active_sessions: Gauge
    running_sessions: Gauge
    connections_total: Counter
    connections_closed_total: Counter
    frames_received_total: Counter
    frames_sent_total: Counter
    errors_total: Counter
    runs_total: Counter
    run_duration_seconds: Histogram
    tool_calls_total: Counter
    llm_request_duration_seconds: Histogram
    llm_tokens_total: Counter
    http_requests_total: Counter
    http_request_duration_seconds: Histogram
    auth_failures_total: Counter
    rate_limited_total: Counter
    slow_consumers_total: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        p = "myagent_ws_"
        r = {"registry": registry}
        return cls(
            registry=registry,
            active_connections=Gauge(f"{p}active_connections", "Open WebSocket connections", **r),
            active_sessions=Gauge(f"{p}active_sessions", "Sessions held in memory", **r),
            running_sessions=Gauge(f"{p}running_sessions", "Sessions with a run going", **r),
            connections_total=Counter(
                f"{p}connections_total", "WebSocket connections accepted", **r
            ),
            connections_closed_total=Counter(
                f"{p}connections_closed_total",
                "WebSocket connections closed, by close code",
                ["code"],
                **r,
            ),
            frames_received_total=Counter(
                f"{p}frames_received_total", "Client frames received, by event", ["event"], **r
            ),
            frames_sent_total=Counter(
                f"{p}frames_sent_total", "Server frames sent, by event", ["event"], **r
            ),
            errors_total=Counter(
                f"{p}errors_total", "agent.error frames sent, by code", ["code"], **r
            ),
            runs_total=Counter(
                f"{p}runs_total", "Agent runs, by agent and outcome", ["agent", "outcome"], **r
            ),
            run_duration_seconds=Histogram(
                f"{p}run_duration_seconds",
                "Agent run duration",
                ["agent"],
                buckets=LATENCY_BUCKETS,
                **r,
            ),
            tool_calls_total=Counter(
                f"{p}tool_calls_total", "Tool calls, by tool and status", ["tool", "status"], **r
            ),
            llm_request_duration_seconds=Histogram(
                f"{p}llm_request_duration_seconds",
                "Model turn duration, by model",
                ["model"],
                buckets=LATENCY_BUCKETS,
                **r,
            ),
            llm_tokens_total=Counter(
                f"{p}llm_tokens_total", "Model tokens, by model and kind", ["model", "kind"], **r
            ),
            http_requests_total=Counter(
                f"{p}http_requests_total",
                "HTTP requests, by route and status",
                ["route", "status"],
                **r,
            ),
            http_request_duration_seconds=Histogram(
                f"{p}http_request_duration_seconds",
                "HTTP request duration (upgrade: until handshake ends)",
                ["route"],
                buckets=LATENCY_BUCKETS,
                **r,
            ),
            auth_failures_total=Counter(
                f"{p}auth_failures_total", "Refused credentials, by reason", ["reason"], **r
            ),
            rate_limited_total=Counter(
                f"{p}rate_limited_total", "Rate-limit rejections, by level", ["level"], **r
            ),
            slow_consumers_total=Counter(
                f"{p}slow_consumers_total", "Connections closed for not reading (1013)", **r
            ),
        )

    @cache  # noqa: B019 - one Metrics per app, children cached for the hot path
    def sent(self, event: str) -> Counter:
        return self.frames_sent_total.labels(event)

    @cache  # noqa: B019
    def received(self, event: str) -> Counter:
        return self.frames_received_total.labels(event)
