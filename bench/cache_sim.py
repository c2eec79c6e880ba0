"""Where a model-path turn's time goes beyond its instructions: each server under callgrind.

    python -m bench.cache_sim              # 200 turns a server (about two minutes in all)
    python -m bench.cache_sim --quick      # a smoke run
    make bench-cache                       # the same, valgrind installed first

The time figures of bench.model_path move by a fifth or more from one run to the next on a
shared machine; these do not. Each server (the ceiling, the ceiling + SDK, myagent-ws) runs
under `valgrind --tool=callgrind` with the cache simulated at this machine's per-core L2 size
(read from sysfs; 1 MiB here): after a warm-up, instrumentation is switched on for the
measured turns only (one client, a new session each, opened before), as bench.turns counts
them. Figures per turn: instructions, first-level data-cache misses, and misses of the
simulated L2, each of which goes to the shared L3 (or memory) on the real machine, where the
neighbours of a shared host compete for it. A turn whose code and data do not fit in the
core's L2 pays for every line again each turn: that, not the instruction count alone, is why
its time ratio to the ceiling is larger than its instruction ratio, and why that ratio moves
with the machine's load. Counts repeat to about 1% from run to run: a change of the service's
per-turn work shows here when the time benchmark cannot resolve it.
Writes bench/results/cache.{json,md}; `make bench-cache` puts the table in
docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.model_path import TOKEN, command, fake_model, model_env, process
from bench.model_report import RESULTS, save
from bench.run import free_port
from bench.turns import run_turns, ws_client

SERVERS = ["ceiling", "ceiling-sdk", "myagent-ws"]
NAMES = {"ceiling-sdk": "ceiling + SDK"}
STARTUP_S = 180  # a Python server starts ~30x slower under valgrind
EVENTS = {  # callgrind's event names -> ours
    "Ir": "instructions",
    "D1mr": "l1d_read_misses",
    "D1mw": "l1d_write_misses",
    "ILmr": "l2_code_misses",
    "DLmr": "l2_read_misses",
    "DLmw": "l2_write_misses",
}


def l2_cache() -> tuple[int, int]:
    """This machine's per-core L2 (bytes, ways), as sysfs gives it; 1 MiB, 16 ways without it.
    The size is rounded down to a power of two, which callgrind's cache model needs."""
    size, ways = 1 << 20, 16
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for index in sorted(base.glob("index*")) if base.is_dir() else []:
        try:
            if (index / "level").read_text().strip() != "2":
                continue
            text = (index / "size").read_text().strip().upper()  # "1024K"
            scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
            size = int(text.rstrip("KM")) * scale
            ways = int((index / "ways_of_associativity").read_text().strip())
        except (OSError, ValueError):
            continue
    return 1 << (size.bit_length() - 1), max(1, ways)


def summary(dump: str) -> dict[str, int]:
    """The event totals of a callgrind dump, by event name ("events:" and "summary:" lines)."""
    names: list[str] = []
    for line in dump.splitlines():
        if line.startswith("events:"):
            names = line.split()[1:]
        elif line.startswith("summary:") and names:
            return dict(zip(names, (int(v) for v in line.split()[1:]), strict=False))
    raise ValueError("no events/summary lines: not a callgrind dump")


def per_turn(totals: dict[str, int], turns: int) -> dict[str, float]:
    """Figures per turn: each event, the L1d misses and the L2 misses summed."""
    get = totals.get
    out = {ours: round(get(name, 0) / turns, 1) for name, ours in EVENTS.items()}
    out["l1d_misses"] = round((get("D1mr", 0) + get("D1mw", 0)) / turns, 1)
    out["l2_misses"] = round((get("ILmr", 0) + get("DLmr", 0) + get("DLmw", 0)) / turns, 1)
    return out


def valgrind(out: Path, l2: tuple[int, int]) -> list[str]:
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        "--cache-sim=yes",
        f"--LL={l2[0]},{l2[1]},64",
        f"--callgrind-out-file={out}.%p",
    ]


def control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, stdout=subprocess.DEVNULL)


async def measure_server(
    server: str, env: dict[str, str], turns: int, l2: tuple[int, int], scratch: Path
) -> dict[str, Any]:
    """One server under callgrind: warmed up, then `turns` turns at one client, counted."""
    port = free_port()
    out = scratch / server
    argv = valgrind(out, l2) + command(server, port, env["OPENAI_BASE_URL"])
    async with process(argv, env, f"http://127.0.0.1:{port}/health", STARTUP_S) as pid:
        client = ws_client(port, TOKEN)
        await run_turns(client, pid, 2, turns=50)  # warm up: lazy imports, first connections
        counting = False

        def switch(pid_: int) -> float:
            """Read right before the first measured turn (instrumentation on) and right after
            the last (the counts dumped), where bench.turns reads a server's CPU."""
            nonlocal counting
            if counting:
                control("-d", str(pid_))
                control("-i", "off", str(pid_))  # the close of the sessions is not counted
            else:
                control("-i", "on", str(pid_))
            counting = not counting
            return 0.0

        load = await run_turns(client, pid, 1, turns=turns, sessions=turns, cpu=switch)
    if load.errors or load.turns < turns:
        raise RuntimeError(f"{server}: {load.errors} failed turns, {load.turns} of {turns} ran")
    return per_turn(summary(measured_dump(scratch, server)), turns)


def measured_dump(scratch: Path, server: str) -> str:
    """The dump of the measured turns: callgrind's first one on request (`<out>.<pid>.1`);
    the one it writes at exit has the instructions after it, with instrumentation off."""
    (dump,) = scratch.glob(f"{server}.*.1")
    return dump.read_text(encoding="utf-8")


async def measure(turns: int, servers: list[str] = SERVERS) -> dict[str, Any]:
    """Each server's per-turn figures against one fake model."""
    l2 = l2_cache()
    model_port = free_port()
    env = model_env(model_port)
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        async with process(fake_model(model_port), env, f"{env['FAKE_MODEL']}/health"):
            for server in servers:
                figures[server] = await measure_server(server, env, turns, l2, Path(scratch))
                print(f"{server}: {figures[server]}", flush=True)
    return {"servers": figures, "l2_bytes": l2[0], "l2_ways": l2[1], "turns": turns}


ROWS = [
    ("instructions", "instructions per turn"),
    ("l1d_misses", "L1d misses per turn"),
    ("l2_misses", "L2 misses per turn (simulated per-core L2)"),
    ("l2_code_misses", "of them, code"),
]


def table(results: dict[str, Any]) -> str:
    servers = results["servers"]
    names = [NAMES.get(s, s) for s in servers]
    head = ["figure", *names, "myagent-ws / ceiling", "ceiling + SDK / ceiling"]
    head.append("myagent-ws / ceiling + SDK")
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    ours, floor, base = servers["myagent-ws"], servers["ceiling-sdk"], servers["ceiling"]
    for key, label in ROWS:
        cells = [label, *(f"{figures[key]:,.0f}" for figures in servers.values())]
        for top, bottom in ((ours, base), (floor, base), (ours, floor)):
            cells.append(f"{top[key] / bottom[key]:.2f}" if bottom[key] else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="a few turns (a smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    turns = 20 if args.quick else args.turns
    results = asyncio.run(measure(turns))
    results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    how = (
        f"on {results['machine']['cpus']} CPUs, Python {results['machine']['python']}: "
        f"{turns} turns a server at one client under callgrind, the L2 simulated at "
        f"{results['l2_bytes'] >> 10} KiB, {results['l2_ways']} ways"
    )
    markdown = table(results)
    save(args.out, "cache", results, markdown, None if args.quick else how)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
