"""`make bench-ab REV=<git rev>`: this tree's frame path against an earlier revision's, in turns.

    python -m bench.ab af16f67             # 5 rounds of 50 sockets x 40 messages each
    python -m bench.ab af16f67 --rounds 3 --connections 500 --messages 4

The machine's speed drifts by a third from minute to minute, so figures of two `make bench` runs
taken at different times do not compare; here the two servers take turns under the same load
generator (bench.loadgen, bench/bench.yaml), this tree's ceiling server (bench/ceiling_server.py)
in the same rounds; the ratios are of medians.
The revision is checked out in a temporary git worktree and served from there by this venv.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench.loadgen import raise_fd_limit, run_load
from bench.run import ROOT, TOKEN, running


async def serve_and_load(tree: Path | None, connections: int, messages: int) -> float:
    """Start the tree's server on its bench config (None: this tree's ceiling server), run one
    load: CPU µs per event."""
    server = "ceiling" if tree is None else "myagent-ws"
    async with running(server, tree or ROOT) as (port, pid, _):
        load = await run_load(port, pid, connections, messages, TOKEN if tree else None)
    if load.errors:
        raise RuntimeError(f"{server} of {tree or ROOT}: {load.errors} conversations failed")
    return load.cpu_us_per_event


async def compare(rev: str, other: Path, rounds: int, connections: int, messages: int) -> None:
    raise_fd_limit()
    figures: dict[str, list[float]] = {rev: [], "this tree": [], "ceiling": []}
    for round_no in range(1, rounds + 1):
        order: list[tuple[str, Path | None]] = [
            (rev, other),
            ("this tree", ROOT),
            ("ceiling", None),
        ]
        for name, tree in order if round_no % 2 else order[::-1]:
            figures[name].append(await serve_and_load(tree, connections, messages))
            print(f"round {round_no} {name:10} {figures[name][-1]:6.1f} µs CPU/event")
    before, now, ceiling = (statistics.median(figures[k]) for k in (rev, "this tree", "ceiling"))
    print(
        f"median CPU µs/event @ {connections} sockets: {rev} {before:.1f} ({before / ceiling:.2f}x"
        f" the ceiling), this tree {now:.1f} ({now / ceiling:.2f}x), ceiling {ceiling:.1f};"
        f" this tree / {rev}: {now / before:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rev", help="the git revision to compare with, e.g. af16f67")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--messages", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        other = Path(scratch) / "tree"
        git = ["git", "-C", str(ROOT), "worktree"]
        subprocess.run([*git, "add", "--detach", "-f", str(other), args.rev], check=True)
        try:
            asyncio.run(compare(args.rev, other, args.rounds, args.connections, args.messages))
        finally:
            subprocess.run([*git, "remove", "--force", str(other)], check=False)


if __name__ == "__main__":
    main()
