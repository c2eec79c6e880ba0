"""The cycle collector of a server that holds many sessions: CPython's thresholds against ours.

    python -m bench.gc_heap            # part of `make bench` (about a minute)
    python -m bench.gc_heap --quick    # a smoke run

A server holds every session it serves; a full collection walks all their objects. myagent-ws
runs the model-path turn (bench.fake_model, as bench.model_path) at 50 clients, in windows of
2,000 turns, each turn in a session of its own, so each window adds 2,000 sessions: once at
CPython's default thresholds (700, 10, 10) and once at `server.gc_threshold`'s default. Per
window: the server's CPU per turn and its collections by generation (`python_gc_collections_total`
from /metrics). The two servers take turns, window by window. Writes bench/results/gc.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bench.model_path import (
    CLIENT_CPU,
    SERVER_CPU,
    TOKEN,
    command,
    fake_model,
    model_env,
    pinned,
    process,
)
from bench.model_report import RESULTS, save
from bench.run import free_port
from bench.turns import run_turns, ws_client
from service.settings import GC_THRESHOLD

CPYTHON = (700, 10, 10)
CLIENTS = 50


async def collections(port: int) -> list[float]:
    """A server's collections so far by generation (0, 1, 2), from its /metrics."""
    url = f"http://127.0.0.1:{port}/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        text = await response.text()
    found = {
        sample.labels["generation"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "python_gc_collections_total"
    }
    return [found[str(generation)] for generation in range(3)]


@asynccontextmanager
async def server(
    env: dict[str, str], threshold: tuple[int, int, int], pin: bool
) -> AsyncIterator[tuple[int, int]]:
    """myagent-ws at these thresholds, warmed up: its port and pid."""
    port = free_port()
    env = {**env, "MYAGENT_WS_SERVER__GC_THRESHOLD": json.dumps(list(threshold))}
    argv = command("myagent-ws", port, env["OPENAI_BASE_URL"])
    argv = pinned(SERVER_CPU, argv) if pin else argv
    async with process(argv, env, f"http://127.0.0.1:{port}/health") as pid:
        await run_turns(ws_client(port, TOKEN), pid, 2, turns=3)
        yield port, pid


async def window(port: int, pid: int, turns_each: int) -> dict[str, Any]:
    """One window's turns at CLIENTS clients; its CPU per turn and collections by generation."""
    before = await collections(port)
    load = await run_turns(
        ws_client(port, TOKEN), pid, CLIENTS, turns=turns_each, sessions=turns_each, within_s=120
    )
    after = await collections(port)
    return {
        "turns": load.turns,
        "errors": load.errors,
        "cpu_ms_per_turn": round(load.cpu_s / load.turns * 1e3, 3) if load.turns else None,
        "collections": [int(b - a) for a, b in zip(before, after, strict=True)],
    }


async def measure(windows: int, turns_each: int, pin: bool = True) -> dict[str, Any]:
    """`windows` windows of CLIENTS x `turns_each` turns on each server; `pin`: the servers on
    one CPU, this load generator and the fake model on the other (as bench.model_path)."""
    model_port = free_port()
    env, argv = model_env(model_port), fake_model(model_port)
    if pin and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {int(CLIENT_CPU)})
    settings = {"cpython": CPYTHON, "ours": GC_THRESHOLD}
    out: dict[str, Any] = {
        name: {"threshold": list(t), "windows": []} for name, t in settings.items()
    }
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(
            process(pinned(CLIENT_CPU, argv) if pin else argv, env, f"{env['FAKE_MODEL']}/health")
        )
        servers = {
            name: await stack.enter_async_context(server(env, threshold, pin))
            for name, threshold in settings.items()
        }
        for number in range(windows):
            order = list(servers) if number % 2 == 0 else list(servers)[::-1]
            for name in order:
                figures = await window(*servers[name], turns_each)
                out[name]["windows"].append(figures)
                print(f"window {number + 1}: {name} {figures}", flush=True)
    return out


def table(results: dict[str, Any], sessions_per_window: int) -> str:
    lines = [
        "| window (sessions held at its end) | CPU ms/turn, (700, 10, 10) | ours | "
        "collections gen 0 / 1 / 2, (700, 10, 10) | ours |",
        "| --- | --- | --- | --- | --- |",
    ]
    cpython, ours = results["cpython"]["windows"], results["ours"]["windows"]
    for number, (a, b) in enumerate(zip(cpython, ours, strict=True), start=1):
        held = number * sessions_per_window
        counts = [" / ".join(str(c) for c in w["collections"]) for w in (a, b)]
        lines.append(
            f"| {number} ({held:,}) | {a['cpu_ms_per_turn']} | {b['cpu_ms_per_turn']} | "
            f"{counts[0]} | {counts[1]} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny numbers (a smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    windows, turns_each = (2, 4) if args.quick else (4, 40)
    results = asyncio.run(measure(windows, turns_each))
    results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    how = (
        f"on {results['machine']['cpus']} CPUs, Python {results['machine']['python']}: "
        f"myagent-ws at {CLIENTS} clients, windows of {CLIENTS * turns_each:,} turns, each "
        f"in a session of its own, the two servers alternating"
    )
    markdown = table(results, CLIENTS * turns_each)
    save(args.out, "gc", results, markdown, None if args.quick else how)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
