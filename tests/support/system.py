"""Real system components for tests: find them, start them on loopback, stop them."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import aiohttp
import pytest


def require(binary: str, *search: str) -> str:
    """The path of a system program; with CI=true a missing one fails the test, else skips."""
    found = shutil.which(binary) or next((p for p in search if Path(p).is_file()), None)
    if found:
        return found
    message = f"{binary} is not installed; run `make test` (scripts/install-system-deps.sh)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], within_s: float = 10) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on port {port} after {within_s} s")


@contextmanager
def redis_server(tmp: Path, port: int | None = None) -> Iterator[str]:
    """A throwaway redis-server on a loopback port (free if not given); yields its URL."""
    binary = require("redis-server", "/usr/bin/redis-server")
    port = port or free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


def wait_until_exits(process: subprocess.Popen[bytes], within_s: float) -> int:
    try:
        return process.wait(within_s)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


@contextmanager
def nginx_proxy(conf_text: str, tmp: Path, port: int) -> Iterator[None]:
    """nginx running this configuration, as a non-daemon child with its files under tmp."""
    binary = require("nginx", "/usr/sbin/nginx")
    (tmp / "logs").mkdir(exist_ok=True)
    conf = tmp / "nginx.conf"
    conf.write_text(conf_text, encoding="utf-8")
    process = subprocess.Popen(
        [
            binary,
            "-p",
            str(tmp),
            "-c",
            str(conf),
            "-g",
            f"daemon off; pid {tmp / 'nginx.pid'}; error_log {tmp / 'logs' / 'error.log'};",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process)
        yield
    finally:
        process.terminate()
        wait_until_exits(process, 10)


@contextmanager
def prometheus_server(config_text: str, tmp: Path, port: int) -> Iterator[str]:
    """Prometheus with this configuration on a loopback port; yields its base URL."""
    binary = require("prometheus", "/usr/bin/prometheus")
    config = tmp / "prometheus.yml"
    config.write_text(config_text, encoding="utf-8")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process, within_s=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        wait_until_exits(process, 15)


@asynccontextmanager
async def service_process(
    agent_file: Path | None, cwd: Path, *, config: Path | None = None, **env: str
) -> AsyncIterator[int]:
    """`myagent-ws server AGENT_FILE` (or `--config CONFIG`, its agents) as a child process on a
    free port; yields the port.

    It runs in `cwd` so that the repo's config/server.yaml is not picked up, with no model key.
    """
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "MYAGENT_WS_"))}
    what = ["--config", str(config)] if config is not None else []
    what += [str(agent_file)] if agent_file is not None else []
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "server", *what, "--port", str(port),
        cwd=cwd, env={**environ, **env},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as http, asyncio.timeout(20):
            while True:
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/health")).status == 200:
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)  # still starting
        yield port
    finally:
        if process.returncode is None:
            process.terminate()
            try:  # a server whose loop is frozen never runs its SIGTERM handler
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()
