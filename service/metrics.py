"""Metrics: every collector of the service, on the registry it is given (one per app)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    ProcessCollector,
)
from prometheus_client.registry import REGISTRY

PREFIX = "myagent_ws_"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
C = TypeVar("C", Counter, Histogram)
WAIT_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)  # people take seconds


@dataclass(frozen=True, eq=False)
class Metrics:
    """The service's collectors; label values come only from closed sets (never ids or text)."""

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
    agent_tokens_total: Counter
    budget_exceeded_total: Counter
    approvals_total: Counter
    approval_wait_seconds: Histogram
    http_requests_total: Counter
    http_request_duration_seconds: Histogram
    auth_failures_total: Counter
    rate_limited_total: Counter
    slow_consumers_total: Counter
    pending_closed_total: Counter
    _children: dict[tuple[object, tuple[str, ...]], Any] = field(default_factory=dict)

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        if registry is not REGISTRY:  # the default registry has both already
            GCCollector(registry=registry)  # python_gc_*: collections by generation
            ProcessCollector(registry=registry)  # process_*: CPU seconds, resident memory, fds

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(PREFIX + name, doc, registry=registry)

        def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
            return Counter(PREFIX + name, doc, labels, registry=registry)

        def histogram(
            name: str, doc: str, labels: Sequence[str], buckets: Sequence[float] = LATENCY_BUCKETS
        ) -> Histogram:
            return Histogram(PREFIX + name, doc, labels, registry=registry, buckets=buckets)

        return cls(
            registry=registry,
            active_connections=gauge("active_connections", "Open WebSocket connections"),
            active_sessions=gauge("active_sessions", "Sessions held in memory"),
            running_sessions=gauge("running_sessions", "Sessions with a run going"),
            connections_total=counter("connections_total", "WebSocket connections accepted"),
            connections_closed_total=counter(
                "connections_closed_total", "WebSocket connections closed, by close code", ["code"]
            ),
            frames_received_total=counter(
                "frames_received_total", "Client frames received, by event", ["event"]
            ),
            frames_sent_total=counter(
                "frames_sent_total", "Server frames sent, by event", ["event"]
            ),
            errors_total=counter("errors_total", "agent.error frames sent, by code", ["code"]),
            runs_total=counter(
                "runs_total", "Agent runs, by agent and outcome", ["agent", "outcome"]
            ),
            run_duration_seconds=histogram("run_duration_seconds", "Agent run duration", ["agent"]),
            tool_calls_total=counter(
                "tool_calls_total", "Tool calls, by tool and status", ["tool", "status"]
            ),
            llm_request_duration_seconds=histogram(
                "llm_request_duration_seconds", "Model turn duration, by model", ["model"]
            ),
            llm_tokens_total=counter(
                "llm_tokens_total", "Model tokens, by model and kind", ["model", "kind"]
            ),
            agent_tokens_total=counter(
                "agent_tokens_total", "Model tokens, by agent and kind", ["agent", "kind"]
            ),
            budget_exceeded_total=counter(
                "budget_exceeded_total", "Runs and messages ended by a budget, by limit", ["limit"]
            ),
            approvals_total=counter(
                "approvals_total", "Tool approvals, by tool and outcome", ["tool", "outcome"]
            ),
            approval_wait_seconds=histogram(
                "approval_wait_seconds", "Time a tool call waited for approval", (), WAIT_BUCKETS
            ),
            http_requests_total=counter(
                "http_requests_total", "HTTP requests, by route and status", ["route", "status"]
            ),
            http_request_duration_seconds=histogram(
                "http_request_duration_seconds",
                "HTTP request duration (an upgrade: until the handshake ends)",
                ["route"],
            ),
            auth_failures_total=counter(
                "auth_failures_total", "Refused credentials, by reason", ["reason"]
            ),
            rate_limited_total=counter(
                "rate_limited_total", "Rate-limit rejections, by level", ["level"]
            ),
            slow_consumers_total=counter(
                "slow_consumers_total", "Connections closed for not reading (1013)"
            ),
            pending_closed_total=counter(
                "pending_closed_total",
                "Connections closed before their request head was complete, by reason",
                ["reason"],
            ),
        )

    def child(self, metric: C, *values: str) -> C:
        """`metric.labels(*values)`, cached: prometheus_client's lookup costs more than the
        increment, and runs and frames take several children each (closed label sets)."""
        key = (metric, values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return cast(C, found)

    def run_ended(self, agent: str, outcome: str, duration_s: float | None = None) -> None:
        self.child(self.runs_total, agent, outcome).inc()
        if duration_s is not None:  # a run lost with its server has no duration here
            self.child(self.run_duration_seconds, agent).observe(duration_s)

    def sent(self, event: str) -> Counter:
        """The frames-sent child for an event: on the per-frame path."""
        return self.child(self.frames_sent_total, event)

    def received(self, event: str) -> Counter:
        return self.child(self.frames_received_total, event)
