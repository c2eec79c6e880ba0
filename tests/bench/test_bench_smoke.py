"""The benchmark cannot rot: its servers and generator run for a moment with tiny numbers."""

from __future__ import annotations

import pytest

from bench.loadgen import hold_idle, run_load
from bench.run import SERVERS, TOKEN, TOKENS_PER_ANSWER, running, table


@pytest.mark.parametrize("server", SERVERS)
async def test_bench_load_runs_every_conversation_to_its_answer(server: str) -> None:
    token = TOKEN if server == "myagent-ws" else None
    async with running(server) as (port, pid, cold_start_s):
        load = await run_load(port, pid, connections=4, messages=3, token=token, within_s=30)
    assert cold_start_s > 0 and load.errors == 0
    assert len(load.final_s) == 4 * 3  # every message got its final answer
    assert load.events == 4 * 3 * (TOKENS_PER_ANSWER + 5)  # the same frames from every server
    assert load.cpu_s > 0 and load.events_per_s > 0


async def test_bench_idle_sockets_and_table() -> None:
    async with running("myagent-ws") as (port, pid, _):
        idle = await hold_idle(port, pid, 20, TOKEN)
    assert idle["held"] == 20 and idle["rss_after_mb"] > 0
    load = {
        "events_per_s": 2.0,
        "cpu_us_per_event": 1.0,
        "first_event_p50_ms": 1.0,
        "first_event_p99_ms": 1.0,
        "final_p99_ms": 1.0,
        "errors": 0,
    }
    results = {
        "loads": {s: {"4": load} for s in SERVERS},
        "idle": {"myagent-ws": {"20": idle}},
        "health": {"ceiling": {"requests_per_s": 10.0}, "myagent-ws": {"requests_per_s": 7.0}},
        "cold_start_s": {},
    }
    markdown = table(results)
    assert "| events/s @ 4 sockets | 2.0 | 2.0 | 2.0 | 1.00 | ≥ 0.7: met |" in markdown
    assert "| /health requests/s (wrk) | 10.0 | – | 7.0 | 0.70 | ≥ 0.8: NOT met |" in markdown


async def test_bench_ab_serves_a_revision_and_the_ceiling() -> None:
    """bench.ab's servers: an earlier tree's (here this one, as a worktree would hold it) and
    the ceiling, each through one load."""
    from bench.ab import ROOT, serve_and_load

    for server in (ROOT, None):
        assert await serve_and_load(server, connections=3, messages=2) > 0
