"""The model-path benchmark cannot rot: every server runs whole turns against the fake model."""

from __future__ import annotations

from bench.model_path import FULL, QUICK, measure, points, schedule
from bench.model_report import table


async def test_model_path_quick_run_has_every_figure_and_no_error() -> None:
    servers = ["ceiling", "ceiling-sdk", "myagent-ws"]
    results = await measure(servers, QUICK, rounds=1, pin=False)
    for server in servers:
        clients = results["servers"][server]["clients"]
        assert set(clients) == {"1", "4"}
        for figures in clients.values():
            assert figures["errors"] == 0 and figures["turns"] > 0
            assert figures["frames_per_turn"] == 25  # thinking, call, result, thinking, 20, final
            assert figures["cpu_ms_per_turn"] > 0 and figures["first_text_p50_ms"] > 0
        history = results["servers"][server]["history"]
        assert history["2"]["request_bytes"] > history["0"]["request_bytes"]  # it did grow
    markdown = table(results)
    for label in ("CPU ms/turn @ 1 clients", "first text p50 ms @ 1 clients",
                  "turn end p99 ms @ 4 clients", "CPU ms/turn, 2 earlier turns"):  # fmt: skip
        assert f"| {label} |" in markdown
    assert "≤ 2:" in markdown and "≤ 1.5:" in markdown  # the targets column
    assert "| ceiling + SDK / ceiling | myagent-ws / ceiling + SDK |" in markdown  # the floor


def test_schedule_measures_a_servers_history_points_one_after_another() -> None:
    """The history growth (50 earlier turns against none) is a ratio of one server's figures:
    within a round they are taken in a row, not minutes apart, and no server is always first."""
    servers, rounds = ["a", "b", "c"], 3
    order = schedule(servers, FULL, rounds)
    assert len(order) == len(set(order)) == len(points(FULL)) * rounds * len(servers)
    history = [p for p in points(FULL) if p[0] == "history"]
    for round_no in range(rounds):
        for server in servers:
            at = [
                i
                for i, (p, r, s) in enumerate(order)
                if p in history and (r, s) == (round_no, server)
            ]
            assert at == list(range(at[0], at[0] + len(history)))
    for point in points(FULL):
        firsts = {next(s for p, r, s in order if p == point and r == n) for n in range(rounds)}
        assert len(firsts) > 1
    for point in points(FULL):  # at a clients point a round's servers come one after another
        if point[0] == "clients":
            rounds_seen = [r for p, r, _ in order if p == point]
            assert rounds_seen == sorted(rounds_seen)


def test_cpu_seconds_keeps_the_cpu_of_threads_that_ended() -> None:
    """A server whose pool threads end mid-load (ADK's) must not show less CPU afterwards."""
    import os
    import threading
    import time

    from bench.turns import cpu_seconds

    ready, release, tid = threading.Event(), threading.Event(), []

    def burn() -> None:
        tid.append(threading.get_native_id())
        started = time.thread_time()
        while time.thread_time() - started < 0.2:
            pass
        ready.set()
        release.wait(10)

    worker = threading.Thread(target=burn)
    worker.start()
    ready.wait(10)
    before = cpu_seconds(os.getpid())  # the worker is still there, with its 0.2 s
    release.set()
    worker.join(10)
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/self/task/{tid[0]}") and time.monotonic() < deadline:
        time.sleep(0.01)  # the kernel reaps the thread just after join
    assert cpu_seconds(os.getpid()) >= before


async def test_sdk_floor_quick_run_measures_every_way() -> None:
    """bench.sdk_floor (the SDK's cost per call against a raw client) cannot rot."""
    from bench.sdk_floor import measure, report

    results = await measure(calls=5, rounds=1, pin=False)
    assert set(results) == {"raw", "sdk", "llm"}
    for figures in results.values():
        assert figures["cpu_ms"] > 0 and figures["wall_ms"] > 0
    assert "| sdk |" in report(results) and "The SDK adds" in report(results)
