"""The model-path benchmark's table, chart and section of docs/performance.md."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
DOC = RESULTS.parent.parent / "docs" / "performance.md"
LABELS = {"ceiling": "ceiling", "ceiling-sdk": "ceiling + SDK", "myagent-ws": "myagent-ws",
          "adk": "ADK"}  # fmt: skip


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def paired(
    results: dict[str, Any], a: tuple[str, str, str], b: tuple[str, str, str], key: str
) -> float | None:
    """a / b, each a (server, part, group): the median of the rounds' own ratios (the two
    figures of a round were taken close together, seconds to tens of seconds apart, so the
    machine's drift over minutes cancels out; model_path.schedule says which)."""
    rounds = results["rounds"]
    values = [
        ratio(ra[a[1]][a[2]].get(key), rb[b[1]][b[2]].get(key))
        for ra, rb in zip(rounds[a[0]], rounds[b[0]], strict=True)
    ]
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def check(value: float | None, limit: float, at_most: bool = True) -> str:
    if value is None:
        return "n/a"
    met = value <= limit if at_most else value >= limit
    return f"{'≤' if at_most else '≥'} {limit:g}: {'met' if met else 'NOT met'}"


def table(results: dict[str, Any]) -> str:
    """Each figure for every server, myagent-ws / ceiling, the SDK's floor (ceiling + SDK /
    ceiling) and what the service adds on it (myagent-ws / ceiling + SDK), ADK / myagent-ws,
    and the target."""
    servers = results["servers"]
    names = list(servers)
    adk, floor = "adk" in servers, "ceiling-sdk" in servers
    head = " | ".join(LABELS[s] for s in names)
    floor_head = " ceiling + SDK / ceiling | myagent-ws / ceiling + SDK |" if floor else ""
    peer_head = " ADK / myagent-ws |" if adk else ""
    lines = [
        f"| figure | {head} | myagent-ws / ceiling |{floor_head}{peer_head} target |",
        "| --- " * (len(names) + 3 + adk + 2 * floor) + "|",
    ]

    def vs(a: str, b: str, part: str, group: str, key: str) -> float | None:
        return paired(results, (a, part, group), (b, part, group), key)

    def row(label: str, part: str, key: str, group: str, target: str = "", peer: str = "") -> None:
        values = [servers[s][part].get(group, {}).get(key) for s in names]
        cells = " | ".join("n/a" if v is None else f"{v:g}" for v in values)
        floor_cells = ""
        if floor:
            floor_cells = (
                f" {fmt(vs('ceiling-sdk', 'ceiling', part, group, key))} |"
                f" {fmt(vs('myagent-ws', 'ceiling-sdk', part, group, key))} |"
            )
        peer_cell = f" {peer} |" if adk else ""
        ours = fmt(vs("myagent-ws", "ceiling", part, group, key))
        lines.append(f"| {label} | {cells} | {ours} |{floor_cells}{peer_cell} {target} |")

    for clients in servers["myagent-ws"]["clients"]:
        part = "clients"
        vs_adk = vs("adk", "myagent-ws", part, clients, "cpu_ms_per_turn") if adk else None
        target = check(vs("myagent-ws", "ceiling", part, clients, "cpu_ms_per_turn"), 2.0)
        if adk:
            target += f"; ADK / ours {check(vs_adk, 10.0, at_most=False)}"
        row(
            f"CPU ms/turn @ {clients} clients",
            part,
            "cpu_ms_per_turn",
            clients,
            target,
            fmt(vs_adk),
        )
        row(f"turns/s @ {clients} clients", part, "turns_per_s", clients)
        first = check(vs("myagent-ws", "ceiling", part, clients, "first_text_p50_ms"), 2.0)
        row(
            f"first text p50 ms @ {clients} clients",
            part,
            "first_text_p50_ms",
            clients,
            first if clients == "1" else "",
        )
        row(f"first text p99 ms @ {clients} clients", part, "first_text_p99_ms", clients)
        row(f"turn end p50 ms @ {clients} clients", part, "turn_end_p50_ms", clients)
        row(f"turn end p99 ms @ {clients} clients", part, "turn_end_p99_ms", clients)
        row(f"frames/turn @ {clients} clients", part, "frames_per_turn", clients)
        row(f"errors @ {clients} clients", part, "errors", clients)
    history = servers["myagent-ws"]["history"]
    for earlier in history:
        ours = ("myagent-ws", "history", earlier)
        growth = paired(results, ours, ("myagent-ws", "history", "0"), "cpu_ms_per_turn")
        target = f"vs 0 earlier: {fmt(growth)}, {check(growth, 1.5)}" if earlier != "0" else ""
        row(f"CPU ms/turn, {earlier} earlier turns", "history", "cpu_ms_per_turn", earlier, target)
        row(f"request bytes, {earlier} earlier turns", "history", "request_bytes", earlier)
    return "\n".join(lines) + "\n"


def chart(results: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart")
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for index, (server, figures) in enumerate(results["servers"].items()):
        clients = figures["clients"]
        left.plot(
            [int(c) for c in clients],
            [clients[c]["cpu_ms_per_turn"] for c in clients],
            marker="o",
            color=f"C{index}",
            label=LABELS[server],
        )
        history = figures["history"]
        right.plot(
            [int(h) for h in history],
            [history[h]["cpu_ms_per_turn"] for h in history],
            marker="o",
            color=f"C{index}",
            label=LABELS[server],
        )
    left.set(title="server CPU ms per turn", xlabel="clients", xscale="log", yscale="log")
    right.set(
        title="server CPU ms per turn vs history",
        xlabel="earlier turns in the session",
        yscale="log",
    )
    left.legend()
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def how_measured(machine: dict[str, Any]) -> str:
    """How a model-path run was measured, for the line above its table in the docs."""
    return (
        f"on {machine['cpus']} CPUs, Python {machine['python']}, "
        f"{machine['chunks']} text chunks per answer, medians of {machine['rounds']} rounds "
        "(a ratio: the median of the rounds' own ratios); "
        f"load average {machine['load_average_before']} before, "
        f"{machine['load_average_after']} after"
    )


def save(out: Path, name: str, results: dict[str, Any], markdown: str, doc: str | None) -> None:
    """A benchmark's figures as out/<name>.json and its table as out/<name>.md; a run into
    bench/results with `doc` (how it was measured: none for a smoke run) also puts the table
    between the `bench:<name>` markers of docs/performance.md."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    (out / f"{name}.md").write_text(markdown, encoding="utf-8")
    if doc is not None and out.resolve() == RESULTS:
        put_in_doc(name, doc, markdown)


def put_in_doc(name: str, how: str, markdown: str) -> None:
    """The table between the `bench:<name>` markers of docs/performance.md, after a line
    saying when and `how` it was measured; nothing if the markers are not there."""
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = DOC.read_text(encoding="utf-8") if DOC.is_file() else ""
    if begin not in text or end not in text:
        return
    about = f"Measured {time.strftime('%Y-%m-%d', time.gmtime())} {how}:"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    DOC.write_text(f"{head}{begin}\n{about}\n\n{markdown}{end}{tail}", encoding="utf-8")
