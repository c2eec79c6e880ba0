"""The model-path benchmark: whole agent turns against a fake model that answers at once.

    python -m bench.model_path             # ceilings and myagent-ws (part of `make bench`)
    python -m bench.model_path --peers     # and Google ADK (`make bench-peers`)
    python -m bench.model_path --quick     # tiny numbers, for a smoke test

Every server runs the weather agent's turn against the same bench.fake_model and is driven
by the same load generator (bench/turns.py): the ceiling (raw aiohttp client), the ceiling
with its model calls through the openai SDK as myagent makes them (the floor of a turn that
keeps the SDK), myagent-ws, and with --peers Google ADK. The server under test is pinned to
CPU 1, the load generator and the fake model to CPU 0. Writes bench/results/model.{json,md,png}.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from bench.model_report import RESULTS, chart, how_measured, save, table
from bench.run import free_port, median_of
from bench.turns import adk_client, run_turns, ws_client

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TOKEN = "benchtoken"
ADK = HERE / "peers" / ".venv" / "bin" / "adk"
CHUNKS = 20  # text chunks of the answer: with the tool call, 25 frames a turn
SERVER_CPU, CLIENT_CPU = "1", "0"
# (clients, measured turns each) ...; earlier turns before the measured ones; bounds. A point
# runs its turns or for within_s, whichever ends first: a few seconds of load for every server
# (ADK does fewer turns in them), so one slow second of this shared machine moves it little.
FULL: dict[str, Any] = {
    "clients": [(1, 600), (10, 80), (50, 16)],
    "history": [0, 1, 10, 50],
    "history_clients": 10,
    "history_turns": 12,
    "history_sessions": 4,  # a measured turn has H to H + 2 earlier turns in its session
    "within_s": 5,
    # ADK's turn with 50 earlier ones costs ~50x ours: its history is built in 2 sessions a
    # client (4 would take its warm-up over 10 minutes a round), the span is the same
    "servers": {"adk": {"history_turns": 6, "history_sessions": 2}},
}
QUICK: dict[str, Any] = {
    "clients": [(1, 5), (4, 3)],
    "history": [0, 2],
    "history_clients": 2,
    "history_turns": 2,
    "history_sessions": 1,
    "within_s": 20,
}


def pinned(cpu: str, argv: list[str]) -> list[str]:
    """argv on one CPU, where there are two or more (taskset)."""
    return ["taskset", "-c", cpu, *argv] if (os.cpu_count() or 1) > 1 else argv


def command(server: str, port: int, model_url: str) -> list[str]:
    if server in ("ceiling", "ceiling-sdk"):
        client = "sdk" if server == "ceiling-sdk" else "raw"
        return [
            sys.executable,
            "-m",
            "bench.model_ceiling",
            "--port",
            str(port),
            "--model-url",
            model_url,
            "--client",
            client,
        ]
    if server == "adk":
        return [
            str(ADK),
            "api_server",
            "--no-reload",
            "--session_service_uri",
            "memory://",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            str(HERE / "peers"),
        ]
    agent = str(ROOT / "examples" / "weather_agent.py")
    return [
        sys.executable,
        "-m",
        "service.cli",
        "server",
        agent,
        "--config",
        str(HERE / "model.yaml"),
        "--port",
        str(port),
    ]


async def wait_healthy(url: str, within_s: float) -> None:
    async with aiohttp.ClientSession() as http, asyncio.timeout(within_s):
        while True:
            try:
                async with http.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)


@asynccontextmanager
async def process(
    argv: list[str], env: dict[str, str], health: str, within_s: float = 60
) -> AsyncIterator[int]:
    """Start a process in a scratch directory; yield its pid once `health` answers."""
    with tempfile.TemporaryDirectory() as cwd:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            await wait_healthy(health, within_s)
            yield proc.pid
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 30)


async def model_stats(base: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/stats") as response:
        return dict(await response.json())


Point = tuple[str, int]  # ("clients", C) or ("history", H)


def points(plan: dict[str, Any]) -> list[Point]:
    return [("clients", c) for c, _ in plan["clients"]] + [("history", h) for h in plan["history"]]


def schedule(servers: list[str], plan: dict[str, Any], rounds: int) -> list[tuple[Point, int, str]]:
    """The order of the measurements: (point, round, server). At a clients point the servers
    take turns, round by round (each ratio between servers pairs figures seconds apart). In a
    round of the history points, each server does all of them in a row, so its growth (H
    earlier turns against none, the target) pairs figures some 20 s apart, not minutes; the
    servers take turns from one round to the next. No server is always first."""

    def turn_order(round_no: int) -> list[str]:
        return servers if round_no % 2 == 0 else servers[::-1]

    clients = [p for p in points(plan) if p[0] == "clients"]
    history = [p for p in points(plan) if p[0] == "history"]
    order = [(p, r, s) for p in clients for r in range(rounds) for s in turn_order(r)]
    order += [(p, r, s) for r in range(rounds) for s in turn_order(r) for p in history]
    return order


async def measure_point(
    server: str, point: Point, env: dict[str, str], plan: dict[str, Any], pin: bool = True
) -> dict[str, Any]:
    """One server's figures at one point: started for it (a heap of its own), warmed up."""
    port = free_port()
    health = f"http://127.0.0.1:{port}/" + ("list-apps" if server == "adk" else "health")
    argv = command(server, port, env["OPENAI_BASE_URL"])
    argv = pinned(SERVER_CPU, argv) if pin else argv
    part, n = point
    plan = {**plan, **plan.get("servers", {}).get(server, {})}  # ADK's own history bounds
    async with process(argv, env, health) as pid:
        client = adk_client(port) if server == "adk" else ws_client(port, TOKEN)
        await run_turns(client, pid, 2, turns=3)  # warm up: lazy imports, first connections
        if part == "clients":  # each turn in a session of its own: no history
            turns = dict(plan["clients"])[n]
            load = await run_turns(
                client, pid, n, turns=turns, sessions=turns, within_s=plan["within_s"]
            )
            return load.summary()
        load = await run_turns(
            client,
            pid,
            plan["history_clients"],
            turns=plan["history_turns"],
            history=n,
            sessions=plan["history_sessions"],
            within_s=plan["within_s"],
        )
        figures = load.summary()
        figures["request_bytes"] = (await model_stats(env["FAKE_MODEL"]))["last_request_bytes"]
        return figures


def model_env(model_port: int) -> dict[str, str]:
    """The environment of every server: this tree's code, the bench token, the fake model at
    `model_port` as the model endpoint (FAKE_MODEL: its base URL)."""
    fake = f"http://127.0.0.1:{model_port}"
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MYAGENT_WS_TOKENS": TOKEN,
        "OPENAI_API_KEY": "bench",
        "OPENAI_BASE_URL": f"{fake}/v1",
        "OPENAI_MODEL": "bench",
        "FAKE_MODEL": fake,
        "ADK_DISABLE_TELEMETRY": "1",
        "LITELLM_LOG": "ERROR",
    }


def fake_model(model_port: int) -> list[str]:
    """The fake model's command: the turn's tool call, then CHUNKS text chunks."""
    return [sys.executable, "-m", "bench.fake_model", "--port", str(model_port),
            "--chunks", str(CHUNKS)]  # fmt: skip


async def measure(
    servers: list[str], plan: dict[str, Any], rounds: int, pin: bool = True
) -> dict[str, Any]:
    """Every figure `rounds` times, the servers taking turns at each point in turn (so the
    figures a ratio compares are taken seconds apart); `pin`: CPUs as the docstring says."""
    if pin and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {int(CLIENT_CPU)})  # the load generator beside the fake model
    model_port = free_port()
    env, argv = model_env(model_port), fake_model(model_port)
    fake = env["FAKE_MODEL"]
    samples: dict[str, list[dict[str, Any]]] = {
        s: [{"clients": {}, "history": {}} for _ in range(rounds)] for s in servers
    }
    async with process(pinned(CLIENT_CPU, argv) if pin else argv, env, f"{fake}/health"):
        for (part, n), round_no, server in schedule(servers, plan, rounds):
            figures = await measure_point(server, (part, n), env, plan, pin)
            samples[server][round_no][part][str(n)] = figures
            print(f"{part} {n} round {round_no + 1}: {server} {figures['cpu_ms_per_turn']} ms",
                  flush=True)  # fmt: skip
    results: dict[str, Any] = {"servers": {}, "rounds": samples}
    for server, runs in samples.items():
        results["servers"][server] = {
            part: {key: median_of([r[part][key] for r in runs]) for key in runs[0][part]}
            for part in ("clients", "history")
        }
    return results


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", action="store_true", help="add Google ADK (make bench-peers)")
    parser.add_argument("--quick", action="store_true", help="tiny numbers (a smoke run)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    servers = ["ceiling", "ceiling-sdk", "myagent-ws"]
    if args.peers:
        if not ADK.exists():
            print(f"no {ADK}: run `make bench-peers`", file=sys.stderr)
            return 2
        servers.append("adk")
    plan = QUICK if args.quick else FULL
    rounds = 1 if args.quick else args.rounds
    before = load_average()
    started = time.perf_counter()
    results = asyncio.run(measure(servers, plan, rounds))
    results["machine"] = {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "chunks": CHUNKS,
        "rounds": rounds,
        "quick": args.quick,
        "load_average_before": before,
        "load_average_after": load_average(),
        "duration_s": round(time.perf_counter() - started, 1),
        "plan": plan,
    }
    name = "model-peers" if args.peers else "model"
    markdown = table(results)
    save(
        args.out, name, results, markdown, None if args.quick else how_measured(results["machine"])
    )
    chart(results, args.out / f"{name}.png")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
