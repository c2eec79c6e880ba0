"""`make bench`: the same load against the ceiling, the seed design and myagent-ws, in one run.

    python -m bench.run            # the full run (a few minutes)
    python -m bench.run --quick    # tiny numbers, for a smoke test

Writes bench/results/latest.{json,md,png}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from bench.loadgen import hold_idle, raise_fd_limit, run_load

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DOC = HERE.parent / "docs" / "performance.md"
BEGIN, END = "<!-- bench:latest -->", "<!-- /bench:latest -->"
TOKEN = "benchtoken"
TOKENS_PER_ANSWER = 50
SERVERS = ("ceiling", "websockets", "myagent-ws")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def command(server: str, port: int) -> list[str]:
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
        str(HERE / "bench.yaml"),
        "--port",
        str(port),
    ]


@asynccontextmanager
async def running(server: str) -> AsyncIterator[tuple[int, int, float]]:
    """Start a server; yield (port, pid, seconds from start to a healthy /health)."""
    port = free_port()
    env = {
        **os.environ,
        "MYAGENT_WS_TOKENS": TOKEN,
        "BENCH_TOKENS": str(TOKENS_PER_ANSWER),
        "PYTHONPATH": str(HERE.parent),
    }
    env.pop("OPENAI_API_KEY", None)
    with tempfile.TemporaryDirectory() as cwd:
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            *command(server, port),
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


def wrk_health(port: int, seconds: int) -> float | None:
    """Requests/s of GET /health under wrk (installed from Debian if missing)."""
    wrk = shutil.which("wrk")
    if wrk is None and os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"], check=False, stdout=subprocess.DEVNULL
        )
        wrk = shutil.which("wrk")
    if wrk is None:
        return None
    out = subprocess.run(
        [wrk, "-t2", "-c50", f"-d{seconds}s", f"http://127.0.0.1:{port}/health"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(match.group(1)) if match else None


async def measure(quick: bool) -> dict[str, Any]:
    raise_fd_limit()
    loads = [(10, 5)] if quick else [(50, 40), (500, 4)]
    idle = [100] if quick else [1000, 10000]
    results: dict[str, Any] = {"loads": {}, "idle": {}, "health_rps": {}, "cold_start_s": {}}
    for server in SERVERS:
        token = TOKEN if server == "myagent-ws" else None
        for connections, messages in loads:
            async with running(server) as (port, pid, cold):
                results["cold_start_s"].setdefault(server, round(cold, 3))
                load = await run_load(port, pid, connections, messages, token)
                results["loads"].setdefault(server, {})[str(connections)] = load.summary()
                print(
                    f"{server:11} {connections:4} sockets: {load.events_per_s:9.0f} events/s, "
                    f"{load.cpu_us_per_event:6.1f} µs CPU/event, errors {load.errors}"
                )
        if server == "websockets":
            continue
        for count in idle:
            async with running(server) as (port, pid, _):
                results["idle"].setdefault(server, {})[str(count)] = await hold_idle(
                    port, pid, count, token
                )
        async with running(server) as (port, pid, _):
            results["health_rps"][server] = wrk_health(port, 2 if quick else 5)
    return results


def ratio(service: float | None, ceiling: float | None) -> str:
    return f"{service / ceiling:.2f}" if service and ceiling else "n/a"


def table(results: dict[str, Any]) -> str:
    lines = [
        "| figure | ceiling | websockets | myagent-ws | myagent-ws / ceiling |",
        "| --- | --- | --- | --- | --- |",
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
                f"{ratio(row[2], row[0])} |"
            )
    for count, figures in results["idle"].get("myagent-ws", {}).items():
        ceiling = results["idle"].get("ceiling", {}).get(count, {})
        lines.append(
            f"| RSS KB/socket, {count} idle | {ceiling.get('rss_per_socket_kb')} | – | "
            f"{figures['rss_per_socket_kb']} (held {figures['held']}) | "
            f"{ratio(figures['rss_per_socket_kb'], ceiling.get('rss_per_socket_kb'))} |"
        )
    rps = results["health_rps"]
    lines.append(
        f"| /health requests/s (wrk) | {rps.get('ceiling')} | – | {rps.get('myagent-ws')} "
        f"| {ratio(rps.get('myagent-ws'), rps.get('ceiling'))} |"
    )
    cold = results["cold_start_s"]
    lines.append(
        f"| cold start to healthy s | {cold.get('ceiling')} | {cold.get('websockets')} | "
        f"{cold.get('myagent-ws')} | {ratio(cold.get('myagent-ws'), cold.get('ceiling'))} |"
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
    for server in SERVERS:
        loads = results["loads"][server]
        conns = [int(c) for c in loads]
        left.plot(conns, [loads[c]["events_per_s"] for c in loads], marker="o", label=server)
        for p, style in ((50, ":"), (99, "-")):
            right.plot(
                conns,
                [loads[c][f"first_event_p{p}_ms"] for c in loads],
                style,
                marker="o",
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


def update_doc(doc: Path, markdown: str, machine: dict[str, Any]) -> None:
    """Put the latest table between the markers of docs/performance.md."""
    if not doc.is_file():
        return
    text = doc.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        return
    when = time.strftime("%Y-%m-%d", time.gmtime())
    about = (
        f"Measured {when} on {machine['cpus']} CPUs, Python {machine['python']}, "
        f"{machine['tokens_per_answer']} tokens per answer:"
    )
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{BEGIN}\n{about}\n\n{markdown}{END}{tail}", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny numbers (a smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = asyncio.run(measure(args.quick))
    results["machine"] = {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "tokens_per_answer": TOKENS_PER_ANSWER,
        "quick": args.quick,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    markdown = table(results)
    (args.out / "latest.md").write_text(markdown, encoding="utf-8")
    chart(results, args.out / "latest.png")
    if not args.quick and args.out == RESULTS:
        update_doc(DOC, markdown, results["machine"])
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
