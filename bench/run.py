"""`make bench`: the same load against the ceiling, the seed design and myagent-ws, in one run.

    python -m bench.run            # the full run (a few minutes)
    python -m bench.run --quick    # tiny numbers, for a smoke test

Writes bench/results/latest.{json,md,png}.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from bench.loadgen import cpu_seconds, hold_idle, raise_fd_limit, run_load
from bench.model_report import RESULTS, save

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TOKEN = "benchtoken"
TOKENS_PER_ANSWER = 50
SERVERS = ("ceiling", "websockets", "myagent-ws")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def command(server: str, port: int, tree: Path = ROOT) -> list[str]:
    if server == "ceiling":
        return [
            sys.executable,
            "-m",
            "bench.ceiling_server",
            "--port",
            str(port),
            "--tokens",
            str(TOKENS_PER_ANSWER),
        ]
    if server == "websockets":
        return [
            sys.executable,
            "-m",
            "bench.websockets_server",
            "--port",
            str(port),
            "--tokens",
            str(TOKENS_PER_ANSWER),
        ]
    return [
        sys.executable,
        "-m",
        "service.cli",
        "server",
        "--config",
        str(tree / "bench" / "bench.yaml"),
        "--port",
        str(port),
    ]


@asynccontextmanager
async def running(server: str, tree: Path = ROOT) -> AsyncIterator[tuple[int, int, float]]:
    """Start a server (myagent-ws: the one in `tree`, a checkout of this repository); yield
    (port, pid, seconds from start to a healthy /health)."""
    port = free_port()
    env = {
        **os.environ,
        "MYAGENT_WS_TOKENS": TOKEN,
        "BENCH_TOKENS": str(TOKENS_PER_ANSWER),
        "PYTHONPATH": str(tree),
    }
    env.pop("OPENAI_API_KEY", None)
    with tempfile.TemporaryDirectory() as cwd:
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            *command(server, port, tree),
            cwd=cwd,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=raise_fd_limit,
        )
        try:
            async with aiohttp.ClientSession() as http, asyncio.timeout(30):
                while True:
                    try:
                        if (await http.get(f"http://127.0.0.1:{port}/health")).status == 200:
                            break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.01)
            yield port, process.pid, time.perf_counter() - started
        finally:
            process.terminate()
            await asyncio.wait_for(process.wait(), 30)


def find_wrk() -> str | None:
    """wrk, installed from Debian if missing (as root)."""
    wrk = shutil.which("wrk")
    if wrk is None and os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"], check=False, stdout=subprocess.DEVNULL
        )
        wrk = shutil.which("wrk")
    return wrk


def wrk_health(wrk: str, port: int, pid: int, seconds: int) -> dict[str, float]:
    """GET /health under wrk: requests/s, and the server's CPU µs per request."""
    cpu = cpu_seconds(pid)
    out = subprocess.run(
        [wrk, "-t1", "-c50", f"-d{seconds}s", f"http://127.0.0.1:{port}/health"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cpu = cpu_seconds(pid) - cpu
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    count = re.search(r"(\d+) requests in", out)
    if rps is None or count is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    return {
        "requests_per_s": float(rps.group(1)),
        "cpu_us_per_request": round(cpu / int(count.group(1)) * 1e6, 2),
    }


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the rounds (this machine's speed drifts from minute to minute)."""
    out: dict[str, Any] = {}
    for key, value in runs[0].items():
        values = [run[key] for run in runs]
        numeric = all(isinstance(v, int | float) for v in values)
        out[key] = round(statistics.median(values), 3) if numeric else value
    out["rounds"] = len(runs)
    return out


async def measure(quick: bool, rounds: int) -> dict[str, Any]:
    """Every figure `rounds` times, the servers taking turns, so drift hits each alike."""
    raise_fd_limit()
    loads = [(10, 5)] if quick else [(50, 40), (500, 4)]
    idle = [100] if quick else [1000, 10000]
    wrk = find_wrk()
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {s: {} for s in SERVERS}
    health: dict[str, list[dict[str, Any]]] = {}
    cold: dict[str, list[float]] = {}
    for round_no in range(1, rounds + 1):
        for connections, messages in loads:
            for server in SERVERS if round_no % 2 else SERVERS[::-1]:  # no server always first
                token = TOKEN if server == "myagent-ws" else None
                async with running(server) as (port, pid, cold_s):
                    cold.setdefault(server, []).append(cold_s)
                    load = await run_load(port, pid, connections, messages, token)
                samples[server].setdefault(str(connections), []).append(load.summary())
                print(
                    f"round {round_no} {server:11} {connections:4} sockets: "
                    f"{load.events_per_s:9.0f} events/s, {load.cpu_us_per_event:6.1f} µs "
                    f"CPU/event, errors {load.errors}"
                )
        for server in ("ceiling", "myagent-ws") if wrk else ():
            async with running(server) as (port, pid, _):
                figures = wrk_health(wrk, port, pid, 2 if quick else 5)
            health.setdefault(server, []).append(figures)
            print(f"round {round_no} {server:11} /health: {figures}")
    results: dict[str, Any] = {
        "loads": {
            server: {conns: median_of(runs) for conns, runs in by_conns.items()}
            for server, by_conns in samples.items()
        },
        "health": {server: median_of(runs) for server, runs in health.items()},
        "cold_start_s": {s: round(statistics.median(v), 3) for s, v in cold.items()},
        "idle": {},
    }
    for server in ("ceiling", "myagent-ws"):
        token = TOKEN if server == "myagent-ws" else None
        for count in idle:
            async with running(server) as (port, pid, _):
                results["idle"].setdefault(server, {})[str(count)] = await hold_idle(
                    port, pid, count, token
                )
    return results


def ratio(service: float | None, ceiling: float | None) -> str:
    return f"{service / ceiling:.2f}" if service and ceiling else "n/a"


# figure -> (target, True if the service/ceiling ratio must be at least the target)
TARGETS = {
    "events_per_s": (0.70, True),
    "cpu_us_per_event": (1.5, False),
    "first_event_p99_ms": (2.0, False),
    "requests_per_s": (0.80, True),
}


def verdict(key: str, service: float | None, ceiling: float | None) -> str:
    if key not in TARGETS or not service or not ceiling:
        return ""
    target, at_least = TARGETS[key]
    value = service / ceiling
    met = value >= target if at_least else value <= target
    return f"{'≥' if at_least else '≤'} {target:g}: {'met' if met else 'NOT met'}"


def table(results: dict[str, Any]) -> str:
    lines = [
        "| figure | ceiling | websockets | myagent-ws | myagent-ws / ceiling | target |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    loads = results["loads"]
    for conns in loads["ceiling"]:
        for key, label in (
            ("events_per_s", "events/s"),
            ("cpu_us_per_event", "CPU µs/event"),
            ("first_event_p50_ms", "first event p50 ms"),
            ("first_event_p99_ms", "first event p99 ms"),
            ("final_p99_ms", "final answer p99 ms"),
            ("errors", "errors"),
        ):
            row = [loads[s][conns][key] for s in SERVERS]
            lines.append(
                f"| {label} @ {conns} sockets | {row[0]} | {row[1]} | {row[2]} | "
                f"{ratio(row[2], row[0])} | {verdict(key, row[2], row[0])} |"
            )
    for count, figures in results["idle"].get("myagent-ws", {}).items():
        ceiling = results["idle"].get("ceiling", {}).get(count, {})
        per_socket = figures["rss_per_socket_kb"]
        target = f"≤ 40 KB: {'met' if per_socket <= 40 else 'NOT met'}"
        lines.append(
            f"| RSS KB/socket, {count} idle | {ceiling.get('rss_per_socket_kb')} | – | "
            f"{per_socket} (held {figures['held']}) | "
            f"{ratio(per_socket, ceiling.get('rss_per_socket_kb'))} | {target} |"
        )
    health = results["health"]
    for key, label in (
        ("requests_per_s", "/health requests/s (wrk)"),
        ("cpu_us_per_request", "/health CPU µs/request"),
    ):
        ceiling, service = (health.get(s, {}).get(key) for s in ("ceiling", "myagent-ws"))
        lines.append(
            f"| {label} | {ceiling} | – | {service} | {ratio(service, ceiling)} | "
            f"{verdict(key, service, ceiling)} |"
        )
    cold = results["cold_start_s"]
    lines.append(
        f"| cold start to healthy s | {cold.get('ceiling')} | {cold.get('websockets')} | "
        f"{cold.get('myagent-ws')} | {ratio(cold.get('myagent-ws'), cold.get('ceiling'))} | |"
    )
    return "\n".join(lines) + "\n"


def chart(results: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart (pip install -e '.[bench]')")
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for index, server in enumerate(SERVERS):
        color = f"C{index}"  # one colour a server, in both panels
        loads = results["loads"][server]
        conns = [int(c) for c in loads]
        left.plot(
            conns, [loads[c]["events_per_s"] for c in loads], marker="o", color=color, label=server
        )
        for p, style in ((50, ":"), (99, "-")):
            right.plot(
                conns,
                [loads[c][f"first_event_p{p}_ms"] for c in loads],
                style,
                marker="o",
                color=color,
                label=f"{server} p{p}",
            )
    left.set(title="server → client events/s", xlabel="connections", xscale="log")
    right.set(
        title="user.message → first event (ms)", xlabel="connections", xscale="log", yscale="log"
    )
    left.legend()
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny numbers (a smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--rounds", type=int, default=3, help="each figure is a median of these")
    args = parser.parse_args()
    results = asyncio.run(measure(args.quick, 1 if args.quick else args.rounds))
    results["machine"] = {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "tokens_per_answer": TOKENS_PER_ANSWER,
        "quick": args.quick,
        "rounds": 1 if args.quick else args.rounds,
    }
    machine = results["machine"]
    how = f"on {machine['cpus']} CPUs, Python {machine['python']}, "
    how += f"{machine['tokens_per_answer']} tokens per answer"
    markdown = table(results)
    save(args.out, "latest", results, markdown, None if args.quick else how)
    chart(results, args.out / "latest.png")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
