"""myagent-ws server|check: argparse, exit codes, web.run_app."""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

import service
from agent_loader.errors import AgentLoadError
from middleware.client import ClientResolver
from service.admission import Admission
from service.errors import ConfigError
from service.logs import LEVELS, configure_logging
from service.settings import Settings, default_config, load_settings

EXIT_OK, EXIT_LISTEN, EXIT_USAGE, EXIT_CONFIG = 0, 1, 2, 2
BACKLOG = 128  # as aiohttp's TCPSite
KEEPALIVE_S = 75.0  # an idle keep-alive connection is closed after this


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="myagent-ws",
        description="Serve an agent written as one Python file over WebSocket.",
    )
    top.add_argument("--version", action="version", version=f"myagent-ws {service.__version__}")
    commands = top.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in (
        ("server", "serve agents over WebSocket, /health and /metrics"),
        ("check", "load and validate the config and agent files, then exit"),
    ):
        cmd = commands.add_parser(name, help=text, description=text)
        cmd.add_argument(
            "agent_file",
            nargs="?",
            type=Path,
            metavar="AGENT_FILE",
            help="a Python file defining `agent` or `create_agent()`",
        )
        cmd.add_argument(
            "--config", type=Path, help="YAML config (default: config/server.yaml when present)"
        )
        cmd.add_argument("--name", help="the agent's name (default: the agent's own name)")
        if name == "server":
            cmd.add_argument("--host", help="address to bind (default 127.0.0.1)")
            cmd.add_argument("--port", type=int, help="port to bind (default 8080)")
            cmd.add_argument(
                "--debug", action="store_true", help="debug logs, readable console format"
            )
    return top


def settings_from(args: argparse.Namespace) -> Settings:
    flags: dict[str, Any] = {"server": {}}
    if getattr(args, "host", None):
        flags["server"]["host"] = args.host
    if getattr(args, "port", None) is not None:
        flags["server"]["port"] = args.port
    if getattr(args, "debug", False):
        flags["logging"] = {"level": "debug", "format": "console"}
    if args.agent_file is not None:
        path = args.agent_file.expanduser().resolve()
        flags["agents"] = [{"name": args.name or "", "file": str(path)}]
    return load_settings(args.config if args.config is not None else default_config(), flags)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command is None:
        parser().print_help()
        return EXIT_USAGE
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        print(f"myagent-ws: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    fmt = settings.logging.format
    json_logs = fmt == "json" or (fmt == "auto" and not sys.stdout.isatty())
    configure_logging(
        json=json_logs, level=LEVELS[settings.logging.level], secrets=settings.auth.secrets
    )
    from service.app import create_app, load_agents

    try:
        agents = load_agents(settings) if settings.agents else None
    except AgentLoadError as exc:
        print(f"myagent-ws: cannot load agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if not agents:
        print(
            "myagent-ws: no agent to serve; pass AGENT_FILE or list `agents:` in the config",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        app = create_app(settings, agents)  # checks the middleware stack and protected mode
    except ConfigError as exc:
        print(f"myagent-ws: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check":
        for spec in agents.values():
            print(f"ok: agent {spec.name!r} from {spec.file}")
        return EXIT_OK
    host, port = settings.server.host, settings.server.port
    log = structlog.get_logger("myagent_ws")
    for spec in agents.values():
        log.info("agent_loaded", agent=spec.name, file=str(spec.file))
    log.info(
        "serving",
        url=f"ws://{host}:{port}/ws",
        health=f"http://{host}:{port}/health",
        console=f"http://{host}:{port}/",
    )
    tune_gc(settings.server.gc_threshold)
    try:
        asyncio.run(serve(app, host, port))
    except OSError as exc:
        print(f"myagent-ws: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return EXIT_LISTEN
    return EXIT_OK


def tune_gc(threshold: tuple[int, int, int]) -> None:
    """Set the cycle collector's thresholds (server.gc_threshold), and freeze what start-up made
    (modules, agents, the app): it lives as long as the process, so no full collection need
    walk it again."""
    gc.set_threshold(*threshold)
    gc.freeze()


async def serve(app: web.Application, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, then drain while still listening, then stop.

    aiohttp's run_app closes the listening socket first; we keep it open during the drain so
    that /health answers 503 and the proxy stops sending new clients while runs finish.
    """
    from service.shutdown import drain

    # keepalive_timeout as run_app sets it (a bare AppRunner keeps idle connections an hour)
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, keepalive_timeout=KEEPALIVE_S
    )
    await runner.setup()
    listener: asyncio.Server | None = None
    try:
        loop = asyncio.get_running_loop()
        # not TCPSite: each connection is guarded until its request head is complete
        assert runner.server is not None  # set by setup()
        guarded = admission(app).wrap(runner.server)
        listener = await loop.create_server(guarded, host, port, backlog=BACKLOG)
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        structlog.get_logger("myagent_ws").info("shutting_down")
        await drain(app)
    finally:
        if listener is not None:
            listener.close()
        await runner.cleanup()


def admission(app: web.Application) -> Admission:
    """The header timeout and the caps on connections still sending their request head."""
    from service.keys import metrics_key, settings_key

    server = app[settings_key].server
    return Admission(
        header_timeout_s=server.header_timeout_s,
        per_address=server.max_pending_per_address,
        total=server.max_pending,
        clients=ClientResolver(server.trusted_proxies),
        closed_total=app[metrics_key].pending_closed_total,
    )


if __name__ == "__main__":
    sys.exit(main())
