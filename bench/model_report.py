"""The model-path benchmark's table, chart and section of docs/performance.md."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
LABELS = {"ceiling": "ceiling", "ceiling-sdk": "ceiling + SDK", "myagent-ws": "myagent-ws",
          "adk": "ADK"}  # fmt: skip


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


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

    def row(label: str, part: str, key: str, group: str, target: str = "", peer: str = "") -> None:
        values = [servers[s][part].get(group, {}).get(key) for s in names]
        ours = servers["myagent-ws"][part][group][key]
        ceiling = servers["ceiling"][part][group][key]
        cells = " | ".join("n/a" if v is None else f"{v:g}" for v in values)
        floor_cells = ""
        if floor:
            sdk = servers["ceiling-sdk"][part][group][key]
            floor_cells = f" {fmt(ratio(sdk, ceiling))} | {fmt(ratio(ours, sdk))} |"
        peer_cell = f" {peer} |" if adk else ""
        lines.append(
            f"| {label} | {cells} | {fmt(ratio(ours, ceiling))} |{floor_cells}{peer_cell}"
            f" {target} |"
        )

    for clients in servers["myagent-ws"]["clients"]:
        part = "clients"
        ours = servers["myagent-ws"][part][clients]
        base = servers["ceiling"][part][clients]
        peer = servers["adk"][part][clients]["cpu_ms_per_turn"] if adk else None
        vs_adk = ratio(peer, ours["cpu_ms_per_turn"])
        target = check(ratio(ours["cpu_ms_per_turn"], base["cpu_ms_per_turn"]), 2.0)
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
        first = check(ratio(ours["first_text_p50_ms"], base["first_text_p50_ms"]), 2.0)
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
    base = history.get("0", {}).get("cpu_ms_per_turn")
    for earlier in history:
        growth = ratio(history[earlier]["cpu_ms_per_turn"], base)
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


def update_doc(name: str, markdown: str, machine: dict[str, Any]) -> None:
    """Put the table between the `bench:<name>` markers of docs/performance.md."""
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    text = DOC.read_text(encoding="utf-8") if DOC.is_file() else ""
    if begin not in text or end not in text:
        return
    when = time.strftime("%Y-%m-%d", time.gmtime())
    about = (
        f"Measured {when} on {machine['cpus']} CPUs, Python {machine['python']}, "
        f"{machine['chunks']} text chunks per answer, medians of {machine['rounds']} rounds; "
        f"load average {machine['load_average_before']} before, "
        f"{machine['load_average_after']} after:"
    )
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    DOC.write_text(f"{head}{begin}\n{about}\n\n{markdown}{end}{tail}", encoding="utf-8")
